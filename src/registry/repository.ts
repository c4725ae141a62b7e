import { createHash } from "node:crypto";
import type { Readable } from "node:stream";
import { type Digest, formatDigest, parseDigest } from "../core/digest.js";
import { TabbifyError } from "../core/errors.js";
import type { ByteRange, StorageDriver } from "../storage/driver.js";
import { ImmutableTags } from "./immutable-tags.js";
import { layout } from "./layout.js";
import {
  acceptedTypes,
  type Descriptor,
  isIndexType,
  maxManifestBytes,
  mediaTypes,
  type ParsedManifest,
  parseManifest,
} from "./manifests.js";
import { checkName, isValidName, lookupReference, parseReference, requestDigest } from "./names.js";
import { type AppendOptions, type UploadState, UploadStore } from "./uploads.js";

export interface RegistryServiceOptions {
  driver: StorageDriver;
  /** Local directory for upload sessions; for the local driver, inside its tmpDir (same device). */
  stagingDir: string;
  /** Upload sessions untouched this long are deleted. Default 24 h. */
  staleUploadMs?: number;
  /** Open upload sessions one tenant (a name's first component) may hold. Default 100. */
  maxUploadsPerTenant?: number;
  /** `repo:tag` globs whose tags, once pushed, keep their digest (TAG_IMMUTABLE otherwise). */
  immutableTags?: readonly string[];
}

export const defaultMaxUploadsPerTenant = 100;

/** Referrers listed per page when the client does not ask for fewer: keeps an index well under 4 MiB. */
export const maxReferrersPage = 1000;

export interface ManifestContent {
  digest: string;
  mediaType: string;
  size: number;
  content: Buffer;
}

/** Which repositories a catalog listing may show (a tenant's, maybe fewer). */
export interface CatalogScope {
  /** The tenant: only names under `<under>/`. */
  under: string;
  /** A further filter (a robot token's pull scopes). */
  keep?: (name: string) => boolean;
}

export interface Page<T> {
  items: T[];
  /** Set when more items follow: the `last` to ask for the next page with. */
  next?: string;
}

interface ManifestMeta {
  mediaType: string;
  size: number;
  parsed: ParsedManifest;
}

const metaCacheLimit = 2048;

/**
 * The repository service: OCI semantics over a StorageDriver. It validates names, digests and
 * manifests, keeps the distribution-style layout (layout.ts) and knows nothing of HTTP.
 * Authorization is the caller's job: the service trusts the repository names it is given.
 */
export class RegistryService {
  readonly driver: StorageDriver;
  readonly uploads: UploadStore;
  /** Parsed manifests by digest: content-addressed, so entries never go stale. */
  private readonly metaCache = new Map<string, ManifestMeta>();
  private readonly immutable: ImmutableTags;

  constructor(opts: RegistryServiceOptions) {
    this.driver = opts.driver;
    this.immutable = new ImmutableTags(opts.immutableTags ?? []);
    this.uploads = new UploadStore(
      opts.stagingDir,
      opts.staleUploadMs ?? 24 * 3600 * 1000,
      opts.maxUploadsPerTenant ?? defaultMaxUploadsPerTenant,
    );
  }

  // ---- blobs ----------------------------------------------------------------------------------

  /** A repository may read a blob it links as a layer or holds as a manifest revision. */
  private async linked(name: string, d: Digest): Promise<boolean> {
    if (await this.driver.stat(layout.layerLink(name, d))) return true;
    return (await this.driver.stat(layout.revisionLink(name, d))) !== null;
  }

  async statBlob(name: string, digest: string): Promise<{ digest: string; size: number }> {
    checkName(name);
    const d = requestDigest(digest);
    const info = (await this.linked(name, d)) ? await this.driver.stat(layout.blobData(d)) : null;
    if (!info) {
      throw new TabbifyError("BLOB_UNKNOWN", `blob ${formatDigest(d)} is not in ${name}`, {
        digest: formatDigest(d),
      });
    }
    return { digest: formatDigest(d), size: info.size };
  }

  /**
   * Opens a blob the repository can read. `pickRange` sees the size and returns the byte range
   * to send (or undefined for all of it); it may throw RANGE_INVALID.
   */
  async openBlob(
    name: string,
    digest: string,
    pickRange: (size: number) => ByteRange | undefined = () => undefined,
  ): Promise<{ digest: string; size: number; range?: ByteRange; stream: Readable }> {
    const blob = await this.statBlob(name, digest);
    const range = pickRange(blob.size);
    const stream = await this.driver.read(layout.blobData(parseDigest(blob.digest)), range);
    return range ? { ...blob, range, stream } : { ...blob, stream };
  }

  async deleteBlob(name: string, digest: string): Promise<void> {
    checkName(name);
    const d = requestDigest(digest);
    if (!(await this.driver.stat(layout.layerLink(name, d)))) {
      throw new TabbifyError("BLOB_UNKNOWN", `blob ${formatDigest(d)} is not in ${name}`, {
        digest: formatDigest(d),
      });
    }
    // Only the link goes: the content may be shared with other repositories (GC is separate).
    await this.driver.delete(layout.layerLink(name, d).replace(/\/link$/, ""));
  }

  /** Links a blob that `from` can read into `name`. False when `from` cannot read it. */
  async mountBlob(name: string, digest: string, from: string): Promise<{ digest: string } | null> {
    checkName(name);
    checkName(from);
    const d = requestDigest(digest);
    if (!(await this.linked(from, d)) || !(await this.driver.stat(layout.blobData(d)))) return null;
    await this.driver.putContent(layout.layerLink(name, d), formatDigest(d));
    return { digest: formatDigest(d) };
  }

  async startUpload(name: string): Promise<UploadState> {
    return this.uploads.create(checkName(name));
  }

  async uploadStatus(name: string, id: string): Promise<UploadState> {
    return this.uploads.status(checkName(name), id);
  }

  async appendUpload(name: string, id: string, body: Readable, opts: AppendOptions): Promise<UploadState> {
    return this.uploads.append(checkName(name), id, body, opts);
  }

  async cancelUpload(name: string, id: string): Promise<void> {
    await this.uploads.cancel(checkName(name), id);
  }

  /**
   * Completes an upload: appends the final chunk if there is one, verifies the digest, publishes
   * the blob (once, shared by all repositories) and links it into the repository.
   */
  async finishUpload(
    name: string,
    id: string,
    digest: string,
    finalChunk?: { body: Readable; opts: AppendOptions },
  ): Promise<{ digest: string; size: number }> {
    checkName(name);
    const d = requestDigest(digest);
    if (finalChunk) await this.uploads.append(name, id, finalChunk.body, finalChunk.opts);
    const { file, size } = await this.uploads.finish(name, id, d);
    await this.commitBlob(name, d, file, size);
    await this.uploads.remove(id);
    return { digest: formatDigest(d), size };
  }

  /** Single-request push (POST ?digest=): staged, verified and committed like any upload. */
  async pushBlob(name: string, digest: string, body: Readable, length?: number): Promise<{ digest: string }> {
    checkName(name);
    const d = requestDigest(digest);
    const upload = await this.uploads.create(name, d.algorithm);
    try {
      await this.uploads.append(name, upload.id, body, length === undefined ? {} : { length });
      const { file, size } = await this.uploads.finish(name, upload.id, d);
      await this.commitBlob(name, d, file, size);
      return { digest: formatDigest(d) };
    } finally {
      await this.uploads.remove(upload.id);
    }
  }

  private async commitBlob(name: string, d: Digest, file: string, size: number): Promise<void> {
    const existing = await this.driver.stat(layout.blobData(d));
    // Same digest, same bytes: an existing blob is kept and the staged copy dropped by the caller.
    if (!existing || existing.size !== size) await this.driver.ingest(layout.blobData(d), file, size);
    await this.driver.putContent(layout.layerLink(name, d), formatDigest(d));
  }

  // ---- manifests ------------------------------------------------------------------------------

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
      const stored = (await this.linked(name, blob.digest))
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

  // ---- discovery ------------------------------------------------------------------------------

  async repositoryExists(name: string): Promise<boolean> {
    const children = await this.driver.list(layout.repository(name));
    return children.some((c) => c === "_manifests" || c === "_layers");
  }

  async listTags(name: string, n?: number, last?: string): Promise<Page<string>> {
    checkName(name);
    if (!(await this.repositoryExists(name))) {
      throw new TabbifyError("NAME_UNKNOWN", `repository ${name} is not known`, { name });
    }
    const tags: string[] = [];
    for (const tag of await this.driver.list(layout.tagsRoot(name))) {
      if (await this.driver.stat(layout.tagLink(name, tag))) tags.push(tag);
    }
    return paginate(tags, n, last);
  }

  /**
   * Every repository, sorted: directories under `repositories/` that hold `_manifests` or
   * `_layers`; with `scope`, only those under `<scope.under>/` that `scope.keep` accepts (the
   * walk starts there, so other tenants' directories are not even read).
   */
  async listRepositories(n?: number, last?: string, scope?: CatalogScope): Promise<Page<string>> {
    const names: string[] = [];
    const walk = async (prefix: string, path: string): Promise<void> => {
      const children = await this.driver.list(path);
      if (children.some((c) => c === "_manifests" || c === "_layers")) names.push(prefix);
      for (const child of children) {
        if (child.startsWith("_")) continue;
        await walk(prefix ? `${prefix}/${child}` : child, `${path}/${child}`);
      }
    };
    if (scope) {
      if (!isValidName(scope.under) || scope.under.includes("/")) return { items: [] };
      for (const child of await this.driver.list(`${layout.repositoriesRoot}/${scope.under}`)) {
        if (child.startsWith("_")) continue;
        await walk(`${scope.under}/${child}`, `${layout.repositoriesRoot}/${scope.under}/${child}`);
      }
    } else {
      await walk("", layout.repositoriesRoot);
    }
    const kept = scope?.keep ? names.filter(scope.keep) : names;
    return paginate(kept.sort(), n, last);
  }

  /**
   * Manifests in `name` whose subject is `digest`, as an OCI image index, sorted by digest and
   * paged like tag lists: at most `n` entries (default and ceiling `maxReferrersPage`) after
   * `last`, with `next` set when more follow.
   */
  async referrers(
    name: string,
    digest: string,
    opts: { artifactType?: string; n?: number; last?: string } = {},
  ): Promise<{ index: { mediaType: string; schemaVersion: 2; manifests: Descriptor[] }; next?: string }> {
    checkName(name);
    const subject = requestDigest(digest);
    const root = layout.referrersOf(name, subject);
    const manifests: Descriptor[] = [];
    for (const alg of await this.driver.list(root)) {
      for (const hex of await this.driver.list(`${root}/${alg}`)) {
        if (opts.last !== undefined && `${alg}:${hex}` <= opts.last) continue;
        const raw = await this.driver.getContent(`${root}/${alg}/${hex}/link`);
        if (!raw) continue;
        const entry = JSON.parse(raw.toString("utf8")) as Descriptor;
        // A referrer whose manifest was deleted behind our back is not listed.
        if (!(await this.driver.stat(layout.revisionLink(name, parseDigest(entry.digest))))) continue;
        if (opts.artifactType !== undefined && entry.artifactType !== opts.artifactType) continue;
        manifests.push(entry);
      }
    }
    manifests.sort((a, b) => (a.digest < b.digest ? -1 : a.digest > b.digest ? 1 : 0));
    const n = Math.min(opts.n ?? maxReferrersPage, maxReferrersPage);
    const page = manifests.slice(0, n);
    const index = { schemaVersion: 2 as const, mediaType: mediaTypes.ociIndex, manifests: page };
    return manifests.length > n && page.length > 0
      ? { index, next: page[page.length - 1]!.digest }
      : { index };
  }

  async cleanupStaleUploads(): Promise<number> {
    return this.uploads.cleanupStale();
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

function paginate(sorted: string[], n?: number, last?: string): Page<string> {
  const after = last === undefined ? sorted : sorted.filter((s) => s > last);
  if (n === undefined || after.length <= n) return { items: after };
  const items = after.slice(0, n);
  const page: Page<string> = { items };
  if (items.length > 0) page.next = items[items.length - 1]!;
  return page;
}
