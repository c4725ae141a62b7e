import assert from "node:assert/strict";
import { it } from "node:test";
import { type ReleaseRow, type RunRow, releaseRoots } from "./release-roots.js";

const APP = "0191e7c2-1111-7222-8333-444455556666";
const digest = (i: number) => `sha256:${i.toString(16).padStart(64, "0")}`;
// uuid-v7-like ids that sort by creation.
const id = (i: number) => `0191e7c2-${String(i).padStart(4, "0")}-7000-8000-000000000000`;
const release = (i: number): ReleaseRow => ({
  id: id(i),
  app_uuid: APP,
  digest: digest(i),
  manifest: JSON.stringify({ image: `127.0.0.1:5000/acme/${APP}@${digest(i)}` }),
});
let clock = 0;
const run = (env: string, i: number): RunRow => ({
  app_uuid: APP,
  environment: env,
  release_id: id(i),
  started_at: new Date(Date.UTC(2026, 0, 1, 0, 0, clock++)).toISOString(),
});

const kept = (reply: ReturnType<typeof releaseRoots>) =>
  new Map(reply.repositories[0]!.keep.map((k) => [Number.parseInt(k.digest.slice(7), 16), k.reason]));

it("15 prod deploys with keep 10: exactly the last 10, the newest also as running", () => {
  const releases = Array.from({ length: 15 }, (_, i) => release(i + 1));
  const runs = releases.map((_, i) => run("prod", i + 1));
  const reply = releaseRoots(releases, runs, 10);
  assert.equal(reply.repositories[0]!.repository, `acme/${APP}`);
  assert.equal(reply.repositories[0]!.releases.length, 15);
  const keep = kept(reply);
  assert.deepEqual(
    [...keep.keys()].sort((a, b) => a - b),
    [6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  );
  assert.match(keep.get(15)!, /running in prod/);
});

it("keeps what each environment runs and what test ran that is newer than prod's, beyond the last N", () => {
  const releases = Array.from({ length: 8 }, (_, i) => release(i + 1));
  // test ran 1..8; prod was promoted 2, then rolled back to 1.
  const runs = [...releases.map((_, i) => run("test", i + 1)), run("prod", 2), run("prod", 1)];
  const keep = kept(releaseRoots(releases, runs, 2));
  assert.match(keep.get(1)!, /running in prod/);
  assert.match(keep.get(8)!, /running in test/);
  for (const i of [2, 3, 4, 5]) assert.match(keep.get(i)!, /promotable from test to prod/, `release ${i}`);
  // Everything test ran is newer than prod's current (1), so promotable; the per-env last 2 of prod are 1 and 2.
  assert.deepEqual(
    [...keep.keys()].sort((a, b) => a - b),
    [1, 2, 3, 4, 5, 6, 7, 8],
  );
});

it("a release older than what the next environment runs is not promotable", () => {
  const releases = Array.from({ length: 6 }, (_, i) => release(i + 1));
  const runs = [run("test", 1), run("test", 2), run("prod", 5), run("test", 3), run("prod", 6)];
  const keep = kept(releaseRoots(releases, runs, 1));
  assert.deepEqual(
    [...keep.keys()].sort((a, b) => a - b),
    [3, 6],
  );
});
