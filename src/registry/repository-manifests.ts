import { createHash } from "node:crypto";
import { type Digest, formatDigest, parseDigest } from "../core/digest.js";
import { TabbifyError } from "../core/errors.js";
import type { StorageDriver } from "../storage/driver.js";
import type { ImmutableTags } from "./immutable-tags.js";
import { layout } from "./layout.js";
import {
  acceptedTypes,
  type Descriptor,
  isIndexType,
  maxManifestBytes,
  type ParsedManifest,
  parseManifest,
} from "./manifests.js";
import { checkName, lookupReference, parseReference } from "./names.js";
import type { RepositoryBlobs } from "./repository-blobs.js";

export interface ManifestContent {
  digest: string;
  mediaType: string;
  size: number;
  content: Buffer;
}

interface ManifestMeta {
  mediaType: string;
  size: number;
  parsed: ParsedManifest;
}

const metaCacheLimit = 2048;

/**
 * Manifests of the repository service: stored as blobs, linked as revisions of a repository,
 * named by tags (immutable ones checked here) and indexed under their subject as referrers.
 */
export class RepositoryManifests {
  /** Parsed manifests by digest: content-addressed, so entries never go stale. */
  private readonly metaCache = new Map<string, ManifestMeta>();

  constructor(
    private readonly driver: StorageDriver,
    private readonly blobs: RepositoryBlobs,
    private readonly immutable: ImmutableTags,
  ) {}

  private async resolve(name: string, reference: string): Promise<Digest> {
    checkName(name);
    const ref = lookupReference(reference);
    if (ref.kind === "digest") {
      if (!(await this.driver.stat(layout.revisionLink(name, ref.digest)))) {
        throw new TabbifyError("MANIFEST_UNKNOWN", `manifest ${formatDigest(ref.digest)} is not in ${name}`, {
          digest: formatDigest(ref.digest),
        });
      }
      return ref.digest;
    }
    const link = await this.driver.getContent(layout.tagLink(name, ref.tag));
    if (!link) {
      throw new TabbifyError("MANIFEST_UNKNOWN", `tag "${ref.tag}" is not in ${name}`, { tag: ref.tag });
    }
    return parseDigest(link.toString("utf8").trim());
  }

  private async loadManifest(d: Digest): Promise<{ meta: ManifestMeta; content: Buffer }> {
    const content = await this.driver.getContent(layout.blobData(d));
    if (!content) {
      throw new TabbifyError("MANIFEST_UNKNOWN", `manifest ${formatDigest(d)} has no content`, {
        digest: formatDigest(d),
      });
    }
    const key = formatDigest(d);
    let meta = this.metaCache.get(key);
    if (!meta) {
      const parsed = parseManifest(content, undefined);
      meta = { mediaType: parsed.mediaType, size: content.length, parsed };
      this.remember(key, meta);
    }
    return { meta, content };
  }

  private remember(key: string, meta: ManifestMeta): void {
    if (this.metaCache.size >= metaCacheLimit) {
      const oldest = this.metaCache.keys().next().value;
      if (oldest !== undefined) this.metaCache.delete(oldest);
    }
    this.metaCache.set(key, meta);
  }

  /**
   * Reads a manifest by tag or digest. With an Accept header that admits image manifests but not
   * the stored index type, an index is resolved to its linux/amd64 (else first) image manifest,
   * as distribution does for clients that cannot read lists.
   */
  async getManifest(name: string, reference: string, accept?: string | string[]): Promise<ManifestContent> {
    const d = await this.resolve(name, reference);
    const { meta, content } = await this.loadManifest(d);
    const accepted = acceptedTypes(accept);
    if (
      isIndexType(meta.mediaType) &&
      accepted.size > 0 &&
      !accepted.has(meta.mediaType) &&
      !accepted.has("*/*") &&
      !accepted.has("application/*")
    ) {
      const children = meta.parsed.manifests.filter((m) => accepted.has(m.mediaType));
      const pick =
        children.find((m) => m.platform?.os === "linux" && m.platform?.architecture === "amd64") ??
        children[0];
      if (pick) {
        const child = parseDigest(pick.digest);
        if (await this.driver.stat(layout.revisionLink(name, child))) {
          const loaded = await this.loadManifest(child);
          return {
            digest: pick.digest,
            mediaType: loaded.meta.mediaType,
            size: loaded.content.length,
            content: loaded.content,
          };
        }
      }
    }
    return { digest: formatDigest(d), mediaType: meta.mediaType, size: content.length, content };
  }

  /**
   * Stores a manifest under a tag or its digest. Every blob it references must be readable by the
   * repository and every child manifest of an index must be in it (MANIFEST_BLOB_UNKNOWN), each
   * with the size its descriptor declares (MANIFEST_INVALID otherwise: a client trusting the
   * descriptor would read past the blob or stop short); the subject need not exist yet (the spec
   * lets referrers arrive first).
   */
  async putManifest(
    name: string,
    reference: string,
    body: Buffer,
    contentType: string | undefined,
  ): Promise<{ digest: string; subject?: string }> {
    checkName(name);
    const ref = parseReference(reference);
    if (body.length > maxManifestBytes) {
      throw new TabbifyError("MANIFEST_TOO_LARGE", `manifest is over ${maxManifestBytes} bytes`, {
        limit: maxManifestBytes,
      });
    }
    const algorithm = ref.kind === "digest" ? ref.digest.algorithm : "sha256";
    const d: Digest = { algorithm, hex: createHash(algorithm).update(body).digest("hex") };
    if (ref.kind === "digest" && ref.digest.hex !== d.hex) {
      throw new TabbifyError(
        "DIGEST_INVALID",
        `manifest has digest ${formatDigest(d)}, not ${formatDigest(ref.digest)}`,
        { digest: formatDigest(ref.digest) },
      );
    }
    if (ref.kind === "tag") await this.checkMutable(name, ref.tag, formatDigest(d));
    const parsed = parseManifest(body, contentType);
    for (const blob of parsed.blobs) {
      const stored = (await this.blobs.linked(name, blob.digest))
        ? await this.driver.stat(layout.blobData(blob.digest))
        : null;
      if (!stored) {
        throw new TabbifyError(
          "MANIFEST_BLOB_UNKNOWN",
          `manifest references blob ${formatDigest(blob.digest)}, which is not in ${name}`,
          { digest: formatDigest(blob.digest) },
        );
      }
      checkDeclaredSize(blob.where, formatDigest(blob.digest), blob.size, stored.size);
    }
    for (const [i, child] of parsed.manifests.entries()) {
      const d = parseDigest(child.digest);
      const stored = (await this.driver.stat(layout.revisionLink(name, d)))
        ? await this.driver.stat(layout.blobData(d))
        : null;
      if (!stored) {
        throw new TabbifyError(
          "MANIFEST_BLOB_UNKNOWN",
          `index references manifest ${child.digest}, which is not in ${name}`,
          { digest: child.digest },
        );
      }
      checkDeclaredSize(`manifests[${i}]`, child.digest, child.size, stored.size);
    }
    const digest = formatDigest(d);
    if (!(await this.driver.stat(layout.blobData(d)))) await this.driver.putContent(layout.blobData(d), body);
    await this.driver.putContent(layout.revisionLink(name, d), digest);
    this.remember(digest, { mediaType: parsed.mediaType, size: body.length, parsed });
    if (parsed.subject) {
      const subject = parseDigest(parsed.subject.digest);
      const entry: Descriptor = { mediaType: parsed.mediaType, digest, size: body.length };
      if (parsed.artifactType) entry.artifactType = parsed.artifactType;
      if (parsed.annotations) entry.annotations = parsed.annotations;
      await this.driver.putContent(layout.referrerLink(name, subject, d), JSON.stringify(entry));
    }
    if (ref.kind === "tag") await this.driver.putContent(layout.tagLink(name, ref.tag), digest);
    return parsed.subject ? { digest, subject: parsed.subject.digest } : { digest };
  }

  /**
   * Deletes a tag, or (by digest) a manifest with every tag pointing at it and its referrer entry.
   * Returns the digest the reference named (what a delete notification carries).
   */
  async deleteManifest(name: string, reference: string): Promise<{ digest: string; tag?: string }> {
    checkName(name);
    const ref = parseReference(reference);
    if (ref.kind === "tag") {
      const link = await this.driver.getContent(layout.tagLink(name, ref.tag));
      if (!link) {
        throw new TabbifyError("MANIFEST_UNKNOWN", `tag "${ref.tag}" is not in ${name}`, { tag: ref.tag });
      }
      await this.checkMutable(name, ref.tag);
      await this.driver.delete(layout.tag(name, ref.tag));
      return { digest: link.toString("utf8").trim(), tag: ref.tag };
    }
    const d = await this.resolve(name, reference);
    const digest = formatDigest(d);
    const { meta } = await this.loadManifest(d).catch(() => ({ meta: undefined }));
    const tags: string[] = [];
    for (const tag of await this.driver.list(layout.tagsRoot(name))) {
      const link = await this.driver.getContent(layout.tagLink(name, tag));
      if (link?.toString("utf8").trim() === digest) tags.push(tag);
    }
    // Checked for every tag before any goes: a refused delete changes nothing.
    for (const tag of tags) await this.checkMutable(name, tag);
    for (const tag of tags) await this.driver.delete(layout.tag(name, tag));
    if (meta?.parsed.subject) {
      const subject = parseDigest(meta.parsed.subject.digest);
      await this.driver.delete(layout.referrerLink(name, subject, d).replace(/\/link$/, ""));
    }
    await this.driver.delete(layout.revisionLink(name, d).replace(/\/link$/, ""));
    return { digest };
  }

  /**
   * Throws TAG_IMMUTABLE when an immutability rule covers `name:tag` and the tag exists and would
   * change: moved to another digest (`digest` given) or deleted (`digest` absent).
   */
  private async checkMutable(name: string, tag: string, digest?: string): Promise<void> {
    if (this.immutable.size === 0) return;
    const rule = this.immutable.match(name, tag);
    if (rule === undefined) return;
    const current = (await this.driver.getContent(layout.tagLink(name, tag)))?.toString("utf8").trim();
    if (current === undefined || current === digest) return;
    throw new TabbifyError(
      "TAG_IMMUTABLE",
      `tag ${name}:${tag} is immutable (rule ${rule}): it stays at ${current}`,
      { name, tag, digest: current },
    );
  }
}

function checkDeclaredSize(where: string, digest: string, declared: number, actual: number): void {
  if (declared === actual) return;
  throw new TabbifyError(
    "MANIFEST_INVALID",
    `${where} declares size ${declared} but ${digest} has ${actual} bytes`,
    { reason: `${where}.size does not match the stored content`, digest, declared, actual },
  );
}
