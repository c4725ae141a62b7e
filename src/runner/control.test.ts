import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { silentLogger } from "../core/log.js";
import { type ControlReply, controlRequest, parseControlRequest, serveControlSocket } from "./control.js";

const dir = mkdtempSync(join(tmpdir(), "control-"));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const sockPath = () => join(dir, `s${n++}.sock`);

/** Sends raw bytes, returns everything the server wrote before closing. */
function rawExchange(path: string, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const conn = net.createConnection(path);
    let got = "";
    conn.setEncoding("utf8");
    conn.on("connect", () => conn.write(payload));
    conn.on("data", (d: string) => {
      got += d;
    });
    conn.on("end", () => resolve(got));
    conn.on("error", reject);
  });
}

describe("parseControlRequest", () => {
  test("accepts the five commands", () => {
    assert.deepEqual(parseControlRequest('{"cmd":"ping"}'), { cmd: "ping" });
    assert.deepEqual(parseControlRequest('{"cmd":"health"}'), { cmd: "health" });
    assert.deepEqual(parseControlRequest('{"cmd":"stop"}'), { cmd: "stop" });
    assert.deepEqual(parseControlRequest('{"cmd":"deploy","spec":{"runtime":"process"}}'), {
      cmd: "deploy",
      spec: { runtime: "process" },
    });
    const assign = {
      cmd: "assign",
      uuid: "0191e7c2-1111-7222-8333-444455556666",
      bind: "127.0.0.1:8730",
      control_sock: "/tmp/a.sock",
      log: "/tmp/a.log",
      spec: { runtime: "wasm" },
    };
    assert.deepEqual(parseControlRequest(JSON.stringify(assign)), assign);
  });

  for (const [line, why] of [
    ["not json", /not JSON/],
    ["[1]", /object/],
    ['{"cmd":"reboot"}', /unknown cmd "reboot"/],
    ["{}", /unknown cmd null/],
    ['{"cmd":"deploy"}', /spec/],
    ['{"cmd":"deploy","spec":{}}', /runtime/],
    [
      '{"cmd":"assign","bind":"127.0.0.1:1","control_sock":"/s","log":"/l","spec":{"runtime":"process"}}',
      /uuid/,
    ],
    ['{"cmd":"assign","uuid":"u","bind":"b","control_sock":"/s","log":"/l"}', /spec/],
  ] as const) {
    test(`rejects ${line}`, () => {
      assert.throws(
        () => parseControlRequest(line),
        (err: unknown) => {
          return isTabbifyError(err, "CONTROL_BAD_REQUEST") && why.test(err.message);
        },
      );
    });
  }
});

describe("control socket", () => {
  test("one request, one reply, then close; socket mode 0600", async () => {
    const path = sockPath();
    const seen: string[] = [];
    const server = await serveControlSocket(
      path,
      async (req): Promise<ControlReply> => {
        seen.push(req.cmd);
        return req.cmd === "ping" ? { reply: "pong" } : { reply: "ok" };
      },
      silentLogger,
    );
    try {
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.deepEqual(await controlRequest(path, { cmd: "ping" }), { reply: "pong" });
      // A second line on the same connection is not served: one request per connection.
      const raw = await rawExchange(path, '{"cmd":"ping"}\n{"cmd":"stop"}\n');
      assert.equal(raw, '{"reply":"pong"}\n');
      assert.deepEqual(seen, ["ping", "ping"]);
      assert.deepEqual(JSON.parse(await rawExchange(path, "garbage\n")), {
        reply: "err",
        message: "request is not JSON",
      });
    } finally {
      await server.close();
    }
  });

  test("a failing handler becomes an err reply", async () => {
    const path = sockPath();
    const server = await serveControlSocket(
      path,
      async () => {
        throw new Error("new version failed its health check");
      },
      silentLogger,
    );
    try {
      assert.deepEqual(await controlRequest(path, { cmd: "health" }), {
        reply: "err",
        message: "new version failed its health check",
      });
    } finally {
      await server.close();
    }
  });

  test("a stale socket file is replaced; a live one is refused", async () => {
    const path = sockPath();
    // A socket file nobody listens on, as a runner killed with -9 leaves behind.
    execFileSync("python3", [
      "-c",
      `import socket; socket.socket(socket.AF_UNIX).bind(${JSON.stringify(path)})`,
    ]);
    assert.ok(statSync(path).isSocket());
    const first = await serveControlSocket(path, async () => ({ reply: "pong" }), silentLogger);
    try {
      assert.deepEqual(await controlRequest(path, { cmd: "ping" }), { reply: "pong" });
      await assert.rejects(
        serveControlSocket(path, async () => ({ reply: "pong" }), silentLogger),
        (err: unknown) => isTabbifyError(err, "CONTROL_SOCKET_IN_USE"),
      );
      // The refused second server must not have removed the live socket.
      assert.deepEqual(await controlRequest(path, { cmd: "ping" }), { reply: "pong" });
    } finally {
      await first.close();
    }
  });

  test("client errors: nothing listening, and a server that never answers", async () => {
    await assert.rejects(controlRequest(join(dir, "absent.sock"), { cmd: "ping" }), (err: unknown) =>
      isTabbifyError(err, "CONTROL_UNREACHABLE"),
    );
    const path = sockPath();
    const mute = net.createServer(() => {});
    await new Promise<void>((r) => mute.listen(path, r));
    try {
      await assert.rejects(controlRequest(path, { cmd: "ping" }, { timeoutMs: 200 }), (err: unknown) =>
        isTabbifyError(err, "CONTROL_TIMEOUT"),
      );
    } finally {
      mute.close();
    }
  });
});
