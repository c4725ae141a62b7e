/**
 * A supervisor holds the "never `latest` in prod" line itself, whoever calls it with its key: a
 * deploy marked `environment: "prod"` naming a tag, `latest`, a bare image, a raw directory or a
 * moving artifact version is REF_NOT_PINNED (400) and changes nothing (no runner, no pull, no
 * record). Hostile probe declarations and artifact fields are 400s too; a pinned ref or a
 * non-prod environment goes through to the usual checks.
 */
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { processSpec, randomUuid, SupervisorUnderTest } from "../runtime-plane-support.js";

describe("a supervisor refuses unpinned refs for prod targets", () => {
  let sup: SupervisorUnderTest;

  before(async () => {
    sup = new SupervisorUnderTest();
    await sup.start();
  });
  after(async () => {
    await sup?.cleanup();
  });

  it("answers 400 REF_NOT_PINNED for anything but repo@sha256 or v<N>, and starts nothing", async () => {
    const uuid = randomUuid();
    const pinned = `127.0.0.1:5000/acme/${uuid}@sha256:${"a".repeat(64)}`;
    const refused: Record<string, unknown>[] = [
      { runtime: "docker", ref: "busybox:latest", environment: "prod" },
      { runtime: "docker", ref: `127.0.0.1:5000/acme/${uuid}:v1`, environment: "prod" },
      { runtime: "docker", image: "busybox", environment: "prod" },
      { runtime: "docker", ref: `${pinned}x`, environment: "prod" },
      { runtime: "docker", ref: pinned, image_archive: "/tmp/x.tar", environment: "prod" },
      { ...processSpec(), environment: "prod" },
      { artifact_version: "latest", environment: "prod" },
      { artifact_version: "v1.2", environment: "prod" },
    ];
    for (const body of refused) {
      const res = await sup.call("POST", `/v1/apps/${uuid}/deploy`, body);
      assert.equal(res.status, 400, `${JSON.stringify(body)} → ${JSON.stringify(res.json)}`);
      assert.equal(res.json.code, "REF_NOT_PINNED", JSON.stringify(res.json));
    }
    const listed = await sup.call("GET", "/v1/apps");
    assert.deepEqual(listed.json.apps, [], "nothing was started or recorded");
  });

  it("refuses hostile environment names, probe paths and artifact fields with a 400", async () => {
    const uuid = randomUuid();
    const bad: Record<string, unknown>[] = [
      { ...processSpec(), environment: "../prod" },
      { ...processSpec(), environment: 7 },
      { ...processSpec(), probes: { healthz: "http://169.254.169.254/" } },
      { ...processSpec(), probes: { ready: "/ok\r\nHost: evil" } },
      { ...processSpec(), probes: { version: "/v", expect: [] } },
      { ...processSpec(), probes: { healthz: "/h", command: ["sh"] } },
      { artifact_version: "v1", artifact_app: "../../etc" },
      { artifact_version: "v1", command: ["sh", "-c", "id"] },
      { artifact_version: "v1", release_manifest: "/etc/shadow" },
    ];
    for (const body of bad) {
      const res = await sup.call("POST", `/v1/apps/${uuid}/deploy`, body);
      assert.equal(res.status, 400, `${JSON.stringify(body)} → ${JSON.stringify(res.json)}`);
    }
    assert.deepEqual((await sup.call("GET", "/v1/apps")).json.apps, []);
  });

  it("lets a non-prod environment run a process spec, with its probes checked before it serves", async () => {
    const uuid = randomUuid();
    const ok = await sup.call("POST", `/v1/apps/${uuid}/deploy`, {
      ...processSpec({ VERSION: "release-0123456789" }),
      environment: "test",
      probes: { healthz: "/healthz", version: "/version", expect: ["release-0123456789"] },
    });
    assert.equal(ok.status, 200, JSON.stringify(ok.json));
    const lying = await sup.call("POST", `/v1/apps/${uuid}/deploy`, {
      ...processSpec({ VERSION: "2" }),
      environment: "test",
      probes: { version: "/version", expect: ["release-0123456789"] },
    });
    assert.equal(lying.status, 503, JSON.stringify(lying.json));
    assert.match(String(lying.json.error), /probe version .* does not report the release/);
    const still = await sup.call("GET", `/v1/apps/${uuid}`);
    assert.equal(still.json.state, "running", "the first release keeps serving");
  });
});
