#!/usr/bin/env node
// Launcher: runs the compiled tcli, building it first on a fresh clone.
import { ensureBuilt } from "./ensure-built.js";

const entry = await ensureBuilt("dist/src/main/tcli.js");
await import(entry);
