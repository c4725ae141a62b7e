import assert from "node:assert/strict";
import { test } from "node:test";
import { silentLogger } from "../core/log.js";
import { RosterCoordinator } from "../mesh/coordinator.js";
import { probeLateHosts } from "./host-lost.js";

const APP = "0190f0b4-7a5c-7000-8000-000000000001";

function roster() {
  let now = 1_000_000;
  const coordinator = new RosterCoordinator({ now: () => now });
  const lost: string[] = [];
  coordinator.onLost((peer) => lost.push(`${peer.kind} ${peer.name}`));
  const join = (name: string) => {
    coordinator.register({
      kind: "supervisor",
      name,
      address: `http://[fd5a:1f00:1:${name.length}::1]:8730`,
      ula: `fd5a:1f00:1:${name.length}::1`,
      version: "1",
      tags: ["supervisor"],
    });
  };
  join("host-b");
  coordinator.register({
    kind: "runner",
    name: APP,
    app_uuid: APP,
    parent: "host-b",
    address: `[fd00::1]:8730`,
    ula: "fd00::1",
    version: "1",
    tags: [],
  });
  return {
    coordinator,
    lost,
    join,
    advance: (ms: number) => {
      now += ms;
    },
    down: () => coordinator.topology().down.map((s) => [s.display_name, s.runners.map((r) => r.app_uuid)]),
  };
}

test("a host on time is not asked; one a heartbeat late that gives no handshake is listed down with its apps", async () => {
  const r = roster();
  const asked: string[] = [];
  const probe = {
    alive: async (address: string) => {
      asked.push(address);
      return false;
    },
  };
  r.advance(6_000); // within one 5 s beat and the slack
  assert.deepEqual(await probeLateHosts(r.coordinator, probe, silentLogger), []);
  assert.deepEqual(asked, []);
  r.advance(2_000); // 8 s: a beat missed, 52 s before the heartbeat timeout
  assert.deepEqual(await probeLateHosts(r.coordinator, probe, silentLogger), ["host-b"]);
  assert.deepEqual(asked, ["http://[fd5a:1f00:1:6::1]:8730"]);
  assert.deepEqual(r.down(), [["host-b", [APP]]]);
  assert.deepEqual(r.lost.sort(), [`runner ${APP}`, "supervisor host-b"]);
  assert.equal(r.coordinator.hasApp(APP), true, "its app is known and down (502), not unknown");
});

test("a late host that answers the handshake stays (a supervisor killed with -9 leaves its apps serving)", async () => {
  const r = roster();
  r.advance(30_000);
  assert.deepEqual(await probeLateHosts(r.coordinator, { alive: async () => true }, silentLogger), []);
  assert.deepEqual(r.down(), []);
  assert.equal(r.coordinator.runnerFor(APP)?.parent, "host-b");
});

test("a heartbeat that lands while the host is asked wins over a lost handshake", async () => {
  const r = roster();
  r.advance(10_000);
  const probe = {
    alive: async () => {
      r.join("host-b");
      return false;
    },
  };
  assert.deepEqual(await probeLateHosts(r.coordinator, probe, silentLogger), []);
  assert.deepEqual(r.down(), []);
});
