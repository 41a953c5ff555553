"""The deployment watcher; mirrors nomad/deploymentwatcher (doc.go).

The manager (deployments_watcher.py) runs one watcher per active deployment
(deployment_watcher.py). Each watcher reads its deployment and allocations through
blocking queries, decides purely (decisions.py) whether to fail, auto-revert, promote,
or ask for an evaluation (batched per second, batcher.py), and writes only through the
`DeploymentTriggers` protocol, implemented over the state store by state_triggers.py.
Allocation health itself is decided on the client (client/allochealth).
"""
