// A function served by @google-cloud/functions-framework: every path (/, /healthz) answers.
exports.handler = (req, res) => {
  res.json({ app: "node-function", hello: req.query.name || "world", dyno: process.env.DYNO || null });
};
