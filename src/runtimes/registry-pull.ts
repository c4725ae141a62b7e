/**
 * Pulls an image from our registry with a short-lived registry token, for a deploy that names
 * both. The token goes to docker through a `DOCKER_CONFIG` of its own (`registrytoken`: sent as
 * the Bearer straight to /v2, no `docker login`), in a 0700 temp dir removed right after the
 * pull, so it never reaches argv, a log, the runner or its record.
 */
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dockerCli } from "../core/docker-cli.js";
import { TabbifyError } from "../core/errors.js";

function dockerWithConfig(
  args: string[],
  configDir: string | undefined,
  timeoutMs: number,
): Promise<{ stdout: string; stderr: string }> {
  const env = { ...process.env };
  if (configDir !== undefined) env.DOCKER_CONFIG = configDir;
  return dockerCli(args, { timeoutMs, env, maxBufferBytes: 4 * 1024 * 1024 });
}

/** `host[:port]/path` of a reference, without `:tag` or `@digest`. */
export function imageRepository(image: string): string {
  const noDigest = image.split("@")[0]!;
  const slash = noDigest.lastIndexOf("/");
  const colon = noDigest.lastIndexOf(":");
  return colon > slash ? noDigest.slice(0, colon) : noDigest;
}

/** The registry host of a reference (`host[:port]`), when its first component names one. */
export function imageRegistryHost(image: string): string | undefined {
  const first = image.split("/")[0]!;
  return image.includes("/") && (first.includes(".") || first.includes(":") || first === "localhost")
    ? first
    : undefined;
}

/**
 * `docker pull image` with `registryToken`; when `expectedDigest` is given, the pulled image must
 * carry it as its manifest digest in that repository. Returns the digest the image has there.
 */
export async function pullWithRegistryToken(
  image: string,
  registryToken: string,
  expectedDigest?: string,
): Promise<string | undefined> {
  const host = imageRegistryHost(image);
  if (host === undefined) {
    throw new TabbifyError(
      "SPEC_INVALID",
      `image ${image.slice(0, 200)} names no registry for the registry token`,
    );
  }
  const dir = await mkdtemp(join(tmpdir(), "tabbify-pull-"));
  try {
    await writeFile(
      join(dir, "config.json"),
      JSON.stringify({ auths: { [host]: { registrytoken: registryToken } } }),
      {
        mode: 0o600,
      },
    );
    try {
      await dockerWithConfig(["pull", "-q", image], dir, 600_000);
    } catch (err) {
      // docker's message names the image and the registry's answer, never the config's contents.
      throw new TabbifyError("IMAGE_PULL_FAILED", `cannot pull ${image}: ${(err as Error).message}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const { stdout } = await dockerWithConfig(
    ["image", "inspect", "-f", "{{json .RepoDigests}}", image],
    undefined,
    15_000,
  );
  const repository = imageRepository(image);
  const digests = (JSON.parse(stdout.trim() || "[]") as string[])
    .filter((d) => d.startsWith(`${repository}@`))
    .map((d) => d.slice(repository.length + 1));
  if (expectedDigest !== undefined && !digests.includes(expectedDigest)) {
    throw new TabbifyError(
      "IMAGE_DIGEST_MISMATCH",
      `pulled ${image} is ${digests.join(", ") || "without a digest"}, the deploy wants ${expectedDigest}`,
    );
  }
  return expectedDigest ?? digests[0];
}
