import assert from "node:assert/strict";
import net from "node:net";
import { test } from "node:test";
import { HostProbe } from "./host-probe.js";

async function listening(): Promise<{ server: net.Server; port: number; handshakes: () => number }> {
  let handshakes = 0;
  const server = net.createServer((s) => {
    handshakes++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { server, port: (server.address() as net.AddressInfo).port, handshakes: () => handshakes };
}

test("a host whose supervisor accepts, or refuses, a handshake is alive", async () => {
  const { server, port } = await listening();
  const probe = new HostProbe();
  assert.equal(await probe.alive(`http://127.0.0.1:${port}`), true);
  await new Promise<void>((r) => server.close(() => r()));
  // Refused: the host is there, its supervisor is not (killed with -9, its runners serving).
  assert.equal(await new HostProbe().alive(`http://127.0.0.1:${port}`), true);
});

test("a host with no way to it, or silent, is lost within the probe's timeout", async () => {
  // 100::/64 is the discard-only prefix (RFC 6666): unreachable at once, or silence.
  const started = Date.now();
  assert.equal(await new HostProbe({ timeoutMs: 300 }).alive("http://[100::1]:8730"), false);
  assert.ok(Date.now() - started < 5000);
});

test("probes of one address are shared while in flight and while fresh", async () => {
  const { server, port, handshakes } = await listening();
  const probe = new HostProbe({ freshMs: 60_000 });
  const url = `http://127.0.0.1:${port}`;
  assert.deepEqual(await Promise.all([probe.alive(url), probe.alive(url), probe.alive(url)]), [
    true,
    true,
    true,
  ]);
  assert.equal(await probe.alive(url), true);
  await probe.settled();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(handshakes(), 1);
  await new Promise<void>((r) => server.close(() => r()));
});
