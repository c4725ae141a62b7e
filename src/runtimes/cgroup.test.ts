import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const cgroupModule = fileURLToPath(new URL("./cgroup.js", import.meta.url));

/**
 * `ip netns exec` gives a fresh /sys with no cgroup filesystem while /proc/self/cgroup still names
 * the hierarchies: a process workload there must fall back (undefined), promptly, instead of
 * Node's recursive mkdir retrying ENOENT from sysfs forever (a runner that never answered).
 */
test("a host whose /sys has no cgroup mounts gets no cgroup, promptly", () => {
  if (process.getuid?.() !== 0 || (!existsSync("/usr/sbin/ip") && !existsSync("/usr/bin/ip")))
    assert.fail(
      "this test needs root and iproute2 (apt-get install -y iproute2) to make a network namespace",
    );
  const ns = `tcg${randomBytes(3).toString("hex")}`;
  assert.equal(spawnSync("ip", ["netns", "add", ns]).status, 0);
  try {
    const script = `
      const { limitInCgroup, cgroupLimitsAvailable } = await import(${JSON.stringify(cgroupModule)});
      const got = await limitInCgroup(process.pid, "probe-${ns}", { memoryMb: 64, vcpus: 0.5 });
      console.log(JSON.stringify({ got: got === undefined ? null : got.dirs, available: await cgroupLimitsAvailable() }));
    `;
    const out = spawnSync(
      "ip",
      ["netns", "exec", ns, process.execPath, "--input-type=module", "-e", script],
      {
        encoding: "utf8",
        timeout: 20_000,
      },
    );
    assert.equal(out.signal, null, `limitInCgroup did not return within 20 s: ${out.stderr}`);
    assert.equal(out.status, 0, out.stderr);
    assert.deepEqual(JSON.parse(out.stdout), { got: null, available: false });
  } finally {
    spawnSync("ip", ["netns", "del", ns]);
  }
});
