import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { promisify } from "node:util";
import { createLogger, type Logger } from "../core/log.js";
import { sleep } from "../core/sleep.js";
import { rotateByRename, rotatedPath, watchLogSize } from "./log-rotation.js";

const dir = mkdtempSync(join(tmpdir(), "log-rotation-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshLog = () => join(dir, `r${n++}.log`);
const hour = 3_600_000;

function recordingLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: createLogger("test", "debug", (l) => lines.push(l)), lines };
}
const at = (lines: string[], level: string) => lines.filter((l) => l.split(" ")[1] === level);

async function waitFor(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
const sizeOf = (path: string) => (existsSync(path) ? statSync(path).size : 0);

/** Fixed-width numbered lines, each its own write(2), on stdout and stderr alternately. */
const writerScript = `
const { writeSync } = require("node:fs");
let i = 0;
setInterval(() => {
  for (let k = 0; k < 20; k++, i++) writeSync(1 + (i % 2), "line " + String(i).padStart(8, "0") + " " + "x".repeat(50) + "\\n");
}, 1);
`;
const lineRe = /^line (\d{8}) x{50}$/;

/** The line numbers of a log's content, asserting every line is whole and well formed. */
function lineNumbers(content: string): number[] {
  assert.ok(content.endsWith("\n"), "ends with a whole line");
  return content
    .slice(0, -1)
    .split("\n")
    .map((line) => {
      const m = lineRe.exec(line);
      assert.ok(m, `malformed line ${JSON.stringify(line.slice(0, 80))}`);
      return Number(m[1]);
    });
}
function assertConsecutive(nums: number[]): void {
  for (let i = 1; i < nums.length; i++) assert.equal(nums[i], nums[i - 1]! + 1, `line ${i} follows on`);
}

test("a live writer's log is copy-truncated: .1 keeps the earlier lines, later ones start the log, no NULs", async () => {
  const log = freshLog();
  const maxBytes = 64 * 1024;
  const fd = openSync(log, "a", 0o600);
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(process.execPath, ["-e", writerScript], { stdio: ["ignore", fd, fd] });
    await new Promise((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise((r) => child.once("exit", r));
  const { logger, lines } = recordingLogger();
  const watch = watchLogSize({ path: log, maxBytes, intervalMs: hour, logger });
  try {
    await waitFor("the log to pass maxBytes", () => sizeOf(log) > maxBytes);
    assert.equal(await watch.check(), true);
    const rotatedSize = sizeOf(rotatedPath(log));
    assert.ok(rotatedSize > maxBytes, `.1 holds the copy (${rotatedSize} bytes)`);
    assert.ok(sizeOf(log) < rotatedSize, "the log shrank");
    await waitFor("later lines", () => sizeOf(log) > 200 * 65);
  } finally {
    watch.stop();
    child.kill("SIGKILL");
    await exited;
  }

  const older = readFileSync(rotatedPath(log), "latin1");
  const current = readFileSync(log, "latin1");
  assert.ok(!older.includes("\0"), "no NUL bytes in .1");
  assert.ok(!current.includes("\0"), "no NUL bytes in the log");
  const olderNums = lineNumbers(older);
  const currentNums = lineNumbers(current);
  assert.equal(olderNums[0], 0, ".1 starts with the first line");
  assertConsecutive(olderNums);
  assertConsecutive(currentNums);
  assert.ok(currentNums[0]! > olderNums.at(-1)!, "the log starts with lines written after the copy");
  const info = at(lines, "info");
  assert.equal(info.length, 1);
  assert.match(info[0]!, /log rotated \{"rotatedBytes":\d+,"maxBytes":65536\}/);
  assert.equal(at(lines, "warn").length, 0);
});

test("a log at or below maxBytes is left alone", async () => {
  const log = freshLog();
  writeFileSync(log, "y".repeat(1000));
  const { logger, lines } = recordingLogger();
  const watch = watchLogSize({ path: log, maxBytes: 1000, intervalMs: hour, logger });
  try {
    assert.equal(await watch.check(), false);
  } finally {
    watch.stop();
  }
  assert.equal(readFileSync(log, "utf8"), "y".repeat(1000));
  assert.ok(!existsSync(rotatedPath(log)));
  assert.deepEqual(lines, []);
});

test("a missing log is nothing to do, not an error", async () => {
  const { logger, lines } = recordingLogger();
  const watch = watchLogSize({ path: join(dir, "absent.log"), maxBytes: 10, intervalMs: hour, logger });
  try {
    assert.equal(await watch.check(), false);
  } finally {
    watch.stop();
  }
  assert.deepEqual(lines, []);
});

test("overlapping checks rotate once", async () => {
  const log = freshLog();
  const content = "z".repeat(4 * 1024 * 1024);
  writeFileSync(log, content);
  const { logger, lines } = recordingLogger();
  const watch = watchLogSize({ path: log, maxBytes: 1000, intervalMs: hour, logger });
  try {
    assert.deepEqual(await Promise.all([watch.check(), watch.check(), watch.check()]), [true, true, true]);
    assert.equal(at(lines, "info").length, 1);
    assert.equal(readFileSync(rotatedPath(log), "utf8"), content);
    assert.equal(sizeOf(log), 0);
    assert.equal(await watch.check(), false, "a later check starts afresh and finds nothing to do");
  } finally {
    watch.stop();
  }
});

test("an existing .1 is replaced whole, and no temp file is left behind", async () => {
  const sub = join(dir, "replace");
  mkdirSync(sub);
  const log = join(sub, "a.log");
  writeFileSync(rotatedPath(log), "old generation\n".repeat(100_000));
  writeFileSync(log, "new generation\n".repeat(200));
  const watch = watchLogSize({
    path: log,
    maxBytes: 100,
    intervalMs: hour,
    logger: recordingLogger().logger,
  });
  try {
    assert.equal(await watch.check(), true);
  } finally {
    watch.stop();
  }
  assert.equal(readFileSync(rotatedPath(log), "utf8"), "new generation\n".repeat(200));
  assert.deepEqual(readdirSync(sub).sort(), ["a.log", "a.log.1"]);
});

test("a failed rotation keeps the log whole and warns once per distinct message", async () => {
  const sub = join(dir, "fail");
  mkdirSync(sub);
  const log = join(sub, "a.log");
  // A non-empty directory where `.1` should go: the rename over it fails.
  mkdirSync(rotatedPath(log));
  writeFileSync(join(rotatedPath(log), "keep"), "");
  writeFileSync(log, "w".repeat(5000));
  const { logger, lines } = recordingLogger();
  const watch = watchLogSize({ path: log, maxBytes: 100, intervalMs: hour, logger });
  try {
    assert.equal(await watch.check(), false);
    assert.equal(await watch.check(), false);
  } finally {
    watch.stop();
  }
  assert.equal(readFileSync(log, "utf8"), "w".repeat(5000));
  assert.deepEqual(readdirSync(sub).sort(), ["a.log", "a.log.1"]);
  const warn = at(lines, "warn");
  assert.equal(warn.length, 1);
  assert.match(warn[0]!, /log rotation failed/);
  assert.equal(at(lines, "info").length, 0);
});

test("the timer rotates on its own until stop()", async () => {
  const log = freshLog();
  writeFileSync(log, "a".repeat(5000));
  const { logger, lines } = recordingLogger();
  const watch = watchLogSize({ path: log, maxBytes: 1000, intervalMs: 20, logger });
  try {
    await waitFor("the timer's rotation", () => existsSync(rotatedPath(log)));
  } finally {
    watch.stop();
  }
  // stop() lets a check already running complete; joining it makes the rest deterministic.
  await watch.check();
  assert.equal(sizeOf(log), 0);
  writeFileSync(log, "b".repeat(5000));
  await sleep(200);
  assert.equal(readFileSync(log, "utf8"), "b".repeat(5000), "no rotation after stop()");
  assert.equal(readFileSync(rotatedPath(log), "utf8"), "a".repeat(5000));
  assert.equal(at(lines, "info").length, 1);
});

test("the timer never keeps a process alive", async () => {
  const moduleUrl = new URL("./log-rotation.js", import.meta.url).href;
  const script = `
    const { watchLogSize } = await import(${JSON.stringify(moduleUrl)});
    const quiet = () => {};
    const logger = { debug: quiet, info: quiet, warn: quiet, error: quiet, child: () => logger };
    watchLogSize({ path: ${JSON.stringify(freshLog())}, maxBytes: 10, intervalMs: 50, logger });
  `;
  const started = Date.now();
  await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { timeout: 10_000 });
  assert.ok(Date.now() - started < 5000, "the process exited without waiting on the timer");
});

test("bad options are refused", () => {
  const logger = recordingLogger().logger;
  assert.throws(() => watchLogSize({ path: freshLog(), maxBytes: -1, intervalMs: 10, logger }), RangeError);
  assert.throws(() => watchLogSize({ path: freshLog(), maxBytes: 10, intervalMs: 0, logger }), RangeError);
});

test("rotateByRename moves a log nobody holds to .1 past the limit, and only then", async () => {
  const log = freshLog();
  writeFileSync(log, "x".repeat(100));
  assert.equal(await rotateByRename(log, 1000), false);
  assert.ok(existsSync(log) && !existsSync(rotatedPath(log)));
  writeFileSync(log, "y".repeat(1001));
  assert.equal(await rotateByRename(log, 1000), true);
  assert.ok(!existsSync(log));
  assert.equal(readFileSync(rotatedPath(log), "utf8"), "y".repeat(1001));
  assert.equal(await rotateByRename(join(dir, "absent.log"), 1000), false);
});
