import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { freshRestartState, RecordStore, type RunnerRecord } from "./records.js";

const root = mkdtempSync(join(tmpdir(), "records-"));
after(() => rmSync(root, { recursive: true, force: true }));

function record(uuid: string, pid: number): RunnerRecord {
  return {
    uuid,
    pid,
    control_sock: `/tmp/${uuid}.sock`,
    app_ula: "fd5a:1f02:44a5:240b:121a::1",
    bound_addr: "127.1.2.3:8730",
    mesh: "local",
    parent: "thinkpad",
    spawned_at: new Date(0).toISOString(),
    restart: freshRestartState(),
    spec: { runtime: "process", artifactDir: "/srv/app", command: ["node", "server.js"] },
    workload_pid: null,
    crash_looped: false,
    stopped: false,
  };
}

const a = "0191e7c2-1111-7222-8333-444455556666";
const b = "0191e7c2-2222-7222-8333-444455556666";

test("write then read round-trips, mode 0600, no temp file left", async () => {
  const store = new RecordStore(join(root, "one"));
  await store.init();
  await store.write(record(a, 42));
  assert.deepEqual(await store.read(a), record(a, 42));
  assert.equal(statSync(store.pathOf(a)).mode & 0o777, 0o600);
  assert.equal(statSync(store.dir).mode & 0o777, 0o700);
  assert.deepEqual(readdirSync(store.dir), [`${a}.json`]);
  assert.equal(await store.read(b), undefined);
});

test("concurrent writes leave one complete record", async () => {
  const store = new RecordStore(join(root, "many"));
  await store.init();
  await Promise.all(Array.from({ length: 40 }, (_, i) => store.write(record(a, 1000 + i))));
  const final = await store.read(a);
  assert.ok(final && final.pid !== null && final.pid >= 1000 && final.pid < 1040);
  assert.deepEqual(readdirSync(store.dir), [`${a}.json`]);
});

test("list ignores temp files of interrupted writes and other files; remove is idempotent", async () => {
  const store = new RecordStore(join(root, "list"));
  await store.init();
  await store.write(record(b, 1));
  await store.write(record(a, 2));
  writeFileSync(join(store.dir, `.${a}.123.abcd.tmp`), '{"uuid": "half');
  writeFileSync(join(store.dir, `${a}.log`), "log");
  assert.deepEqual(await store.list(), [a, b]);
  await store.remove(a);
  await store.remove(a);
  assert.deepEqual(await store.list(), [b]);
});

test("a corrupt record is reported, not guessed at", async () => {
  const store = new RecordStore(join(root, "corrupt"));
  await store.init();
  writeFileSync(store.pathOf(a), "{not json");
  await assert.rejects(store.read(a), /not valid JSON/);
});
