// A minimal Express app: answers on $PORT at / and /healthz.
const express = require("express");

const app = express();
app.get("/", (req, res) => res.json({ app: "express", dyno: process.env.DYNO || null }));
app.get("/healthz", (req, res) => res.json({ status: "ok" }));

const host = process.env.HOST || "127.0.0.1";
const port = Number(process.env.PORT);
app.listen(port, host, () => console.log(`listening on http://${host}:${port}`));
