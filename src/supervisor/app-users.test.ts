import assert from "node:assert/strict";
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { APP_UID_BASE, APP_UID_SPAN, AppUsers } from "./app-users.js";

const dir = mkdtempSync(join(tmpdir(), "app-users-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("uids: one per app from its hash, in the range, skipping uids other apps hold", () => {
  const users = new AppUsers({ root: join(dir, "unused"), gid: 995 });
  const uuid = "0191e7c2-1111-7222-8333-444455556666";
  const uid = users.allocate(uuid, new Set());
  assert.equal(users.allocate(uuid, new Set()), uid, "the same app gets the same uid");
  assert.ok(uid >= APP_UID_BASE && uid < APP_UID_BASE + APP_UID_SPAN);
  const next = users.allocate(uuid, new Set([uid]));
  assert.notEqual(next, uid);
  assert.ok(next >= APP_UID_BASE && next < APP_UID_BASE + APP_UID_SPAN);
  assert.notEqual(users.allocate("0191e7c2-1111-7222-8333-444455556667", new Set()), uid);
});

test("as root: the data dir turns 0711, the app's directory is 0700 its own, a staged copy is the app's", async () => {
  assert.equal(process.getuid?.(), 0, "changing owners needs root: run this suite as root");
  const data = join(dir, "data");
  mkdirSync(data, { mode: 0o700 });
  const users = new AppUsers({ root: join(data, "workloads"), gid: 995 });
  await users.init(data);
  assert.equal(statSync(data).mode & 0o777, 0o711);
  assert.equal(statSync(join(data, "workloads")).mode & 0o777, 0o711);

  const uuid = "0191e7c2-1111-7222-8333-444455556666";
  const user = await users.userFor(uuid, APP_UID_BASE + 7);
  const home = statSync(user.home);
  assert.deepEqual([home.mode & 0o777, home.uid, home.gid], [0o700, APP_UID_BASE + 7, 995]);

  const source = join(dir, "source");
  mkdirSync(join(source, "lib"), { recursive: true, mode: 0o700 });
  writeFileSync(join(source, "lib", "app.js"), "app", { mode: 0o600 });
  symlinkSync("/etc/shadow", join(source, "shadow-link"));
  const staged = await users.stage({ runtime: "process", artifactDir: source, command: ["x"] }, user);
  const copy = staged.artifactDir!;
  assert.ok(copy.startsWith(join(user.home, "releases")));
  assert.equal(readFileSync(join(copy, "lib", "app.js"), "utf8"), "app");
  for (const path of [copy, join(copy, "lib"), join(copy, "lib", "app.js"), join(copy, "shadow-link")])
    assert.equal(lstatSync(path).uid, APP_UID_BASE + 7, `${path} is not the app's`);
  assert.ok(lstatSync(join(copy, "shadow-link")).isSymbolicLink(), "a link was followed as root");
  assert.equal(statSync("/etc/shadow").uid, 0, "the link's target kept its owner");
  assert.equal(await users.isStaged(copy, uuid), true);
  assert.equal(await users.isStaged(source, uuid), false, "a path outside the app's releases");

  await users.pruneReleases(uuid, new Set());
  assert.equal(await users.isStaged(copy, uuid), false);
  await users.purge(uuid);
  assert.throws(() => statSync(user.home), /ENOENT/);
});
