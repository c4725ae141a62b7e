import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { parseProcStat, readProcStat, readProcStatSync } from "./proc-stat.js";

// A real line's shape (proc(5)): pid (comm) state ppid pgrp session tty tpgid flags minflt
// cminflt majflt cmajflt utime stime ...
const line = (comm: string) =>
  `4242 (${comm}) S 17 4242 4242 0 -1 4194560 900 0 0 0 31 7 0 0 20 0 1 0 1000 0\n`;

describe("/proc/<pid>/stat", () => {
  it("reads state, ppid, pgrp and the CPU ticks", () => {
    assert.deepEqual(parseProcStat(line("node")), {
      state: "S",
      ppid: 17,
      pgrp: 4242,
      utimeTicks: 31,
      stimeTicks: 7,
    });
  });

  it("is not fooled by a command name holding spaces and parentheses", () => {
    assert.equal(parseProcStat(line("a) Z 1 1 (b"))?.state, "S");
    assert.equal(parseProcStat(line("a) Z 1 1 (b"))?.ppid, 17);
  });

  it("refuses a malformed line", () => {
    assert.equal(parseProcStat(""), undefined);
    assert.equal(parseProcStat("4242 node S 17"), undefined);
    assert.equal(parseProcStat("4242 (node) S x 1"), undefined);
  });

  it("reads this process, and nothing for a pid that does not exist", async () => {
    const own = await readProcStat(process.pid);
    assert.equal(own?.ppid, process.ppid);
    assert.equal(readProcStatSync(process.pid)?.ppid, process.ppid);
    assert.equal(await readProcStat(2 ** 31 - 1), undefined);
    assert.equal(readProcStatSync(2 ** 31 - 1), undefined);
  });
});
