#!/usr/bin/env node
// Launcher: runs the compiled composition root, building it first on a fresh clone.
import { ensureBuilt } from "./ensure-built.js";

const entry = await ensureBuilt("dist/src/main/tabbify.js");
await import(entry);
