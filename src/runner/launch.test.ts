import assert from "node:assert/strict";
import { Readable } from "node:stream";
import { test } from "node:test";
import { checkWorkloadUser, parseLaunchConfig, readLaunchConfig } from "./launch.js";

const spec = { runtime: "process", artifactDir: "/srv/app", command: ["./app"], env: { TOKEN: "s3cret" } };

test("the launch line carries the spec with its env, the node key and the user", async () => {
  const line = JSON.stringify({ spec, node_key: "nk", user: { uid: 1879048200, gid: 995, home: "/d/w/u" } });
  const parsed = await readLaunchConfig(Readable.from([line.slice(0, 10), `${line.slice(10)}\n`]));
  assert.deepEqual(parsed, {
    spec,
    node_key: "nk",
    user: { uid: 1879048200, gid: 995, home: "/d/w/u" },
  });
  assert.deepEqual(parseLaunchConfig(JSON.stringify({ spec })), { spec });
});

test("a bad launch line is refused naming the field, never echoing a value", async () => {
  for (const [line, why] of [
    ["", /stdin was empty/],
    ["{not json", /not JSON/],
    [JSON.stringify({ node_key: "nk" }), /spec must be/],
    [JSON.stringify({ spec, node_key: 7 }), /node_key must be a string/],
    [JSON.stringify({ spec, user: { uid: 0, gid: 995, home: "/h" } }), /user.uid/],
    [JSON.stringify({ spec, user: { uid: 5, gid: 0, home: "/h" } }), /user.gid/],
    [JSON.stringify({ spec, user: { uid: 5, gid: 5, home: "rel" } }), /user.home/],
  ] as const) {
    await assert.rejects(readLaunchConfig(Readable.from([line])), (err: Error) => {
      assert.match(err.message, why);
      assert.ok(!err.message.includes("s3cret"));
      return true;
    });
  }
  assert.throws(() => checkWorkloadUser({ uid: 2 ** 32, gid: 1, home: "/h" }), /user.uid/);
});
