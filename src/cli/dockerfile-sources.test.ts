import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { isTabbifyError } from "../core/errors.js";
import { checkCopySources, copyInstructions } from "./dockerfile-sources.js";

test("COPY and ADD sources are read from every form docker takes", () => {
  const text = [
    "FROM scratch",
    "COPY busybox /bin/busybox",
    'COPY ["start.sh", "/start.sh"]',
    "ADD --chown=1:1 a.txt \\",
    "    b.txt /data/",
    "COPY --from=build /out /out",
    "RUN true",
  ].join("\n");
  assert.deepEqual(copyInstructions(text), [
    { line: 2, instruction: "COPY", sources: ["busybox"] },
    { line: 3, instruction: "COPY", sources: ["start.sh"] },
    { line: 4, instruction: "ADD", sources: ["a.txt", "b.txt"] },
  ]);
});

test("a source missing from the build context fails before docker, naming the line and what to run", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tabbify-copy-sources-"));
  const bin = await mkdtemp(join(tmpdir(), "tabbify-copy-bin-"));
  try {
    await writeFile(
      join(dir, "Dockerfile"),
      "FROM scratch\nCOPY start.sh /s\nCOPY busybox /bin/busybox\nCOPY *.txt /t/\n",
    );
    await writeFile(join(dir, "start.sh"), "echo\n");
    await writeFile(join(bin, "busybox"), "");
    const build = { dockerfile: "Dockerfile", context: "." };
    await assert.rejects(checkCopySources(dir, build, bin), (err) => {
      assert.ok(isTabbifyError(err, "BUILD_CONTEXT_INCOMPLETE"));
      assert.match(
        err.message,
        /^Dockerfile:3: COPY busybox: busybox is not in the build context .*, the only directory docker build sees: cp "\$\(command -v busybox\)" .*busybox, or list it in \[build\] host_programs$/,
      );
      return true;
    });
    await assert.rejects(checkCopySources(dir, build, "/nonexistent"), /: put busybox into .* first$/);
    await writeFile(join(dir, "busybox"), "");
    await checkCopySources(dir, build, bin);
  } finally {
    await rm(dir, { recursive: true, force: true });
    await rm(bin, { recursive: true, force: true });
  }
});
