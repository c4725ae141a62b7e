import { createHmac, timingSafeEqual } from "node:crypto";
import { TabbifyError } from "../core/errors.js";
import { type DeployRecord, isActive } from "./executor.js";
import { canonicalRepoUrl } from "./plan.js";

/**
 * Webhook intake: signature checks over the raw body, push payload parsing for GitHub and
 * Forgejo, and the ledger that keeps redelivered deliveries from deploying twice.
 *
 * Error codes (the node maps them): WEBHOOK_SECRET_UNSET → 503, WEBHOOK_SIGNATURE_INVALID → 401,
 * WEBHOOK_PAYLOAD_INVALID → 400.
 */

export type WebhookSource = "github" | "forgejo";

const SHA256_HEX = /^[0-9a-f]{64}$/i;
const ZERO_SHA = /^0{40}$/;

function requireSecret(secret: string | undefined, envName: string): string {
  if (secret === undefined || secret === "") {
    throw new TabbifyError("WEBHOOK_SECRET_UNSET", `webhook secret is not configured (set ${envName})`);
  }
  return secret;
}

function invalidSignature(why: string): TabbifyError {
  return new TabbifyError("WEBHOOK_SIGNATURE_INVALID", `webhook signature rejected: ${why}`);
}

/** Compares a hex HMAC-SHA256 given by the sender with ours, in time independent of the contents. */
function checkHexHmac(secret: string, rawBody: Buffer, givenHex: string): void {
  if (!SHA256_HEX.test(givenHex)) throw invalidSignature("not a hex SHA-256 digest");
  const expected = createHmac("sha256", secret).update(rawBody).digest();
  const given = Buffer.from(givenHex, "hex");
  if (!timingSafeEqual(expected, given)) throw invalidSignature("does not match the body");
}

/**
 * GitHub's `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`. Throws
 * WEBHOOK_SECRET_UNSET when no secret is configured (checked first, so an unconfigured node never
 * looks like it rejected a signature) and WEBHOOK_SIGNATURE_INVALID otherwise.
 */
export function verifyGithubSignature(
  secret: string | undefined,
  rawBody: Buffer,
  header: string | undefined,
): void {
  const key = requireSecret(secret, "GITHUB_WEBHOOK_SECRET");
  if (header === undefined || header === "") throw invalidSignature("X-Hub-Signature-256 header missing");
  const prefix = "sha256=";
  if (!header.startsWith(prefix)) throw invalidSignature("X-Hub-Signature-256 must start with sha256=");
  checkHexHmac(key, rawBody, header.slice(prefix.length));
}

/**
 * Forgejo's `X-Forgejo-Signature: <hex HMAC-SHA256 of the raw body>` (no prefix). Gitea-compatible
 * senders put the same value in `X-Gitea-Signature`; pick the header with
 * {@link forgejoSignatureHeader}.
 */
export function verifyForgejoSignature(
  secret: string | undefined,
  rawBody: Buffer,
  header: string | undefined,
): void {
  const key = requireSecret(secret, "FORGEJO_WEBHOOK_SECRET");
  if (header === undefined || header === "") throw invalidSignature("X-Forgejo-Signature header missing");
  checkHexHmac(key, rawBody, header);
}

type HeaderBag = Record<string, string | string[] | undefined>;

function header(headers: HeaderBag, name: string): string | undefined {
  const value = headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The signature header of a Forgejo delivery. `X-Forgejo-Signature` wins when present, so a bad
 * Forgejo signature is never rescued by a good-looking Gitea one. Header names as node:http gives
 * them (lowercase).
 */
export function forgejoSignatureHeader(headers: HeaderBag): string | undefined {
  return header(headers, "x-forgejo-signature") ?? header(headers, "x-gitea-signature");
}

/** Event name and delivery id of a delivery, from the source's own headers. */
export function deliveryHeaders(
  source: WebhookSource,
  headers: HeaderBag,
): { eventName: string | undefined; deliveryId: string | undefined } {
  if (source === "github") {
    return { eventName: header(headers, "x-github-event"), deliveryId: header(headers, "x-github-delivery") };
  }
  return {
    eventName: header(headers, "x-forgejo-event") ?? header(headers, "x-gitea-event"),
    deliveryId: header(headers, "x-forgejo-delivery") ?? header(headers, "x-gitea-delivery"),
  };
}

export interface PushEvent {
  kind: "push";
  source: WebhookSource;
  deliveryId: string;
  /** `repository.clone_url`: what the builder clones. */
  repoUrl: string;
  /** `owner/name`. */
  fullName: string;
  ref: string;
  /** Set for `refs/heads/*` pushes (the only ones that deploy). */
  branch?: string;
  /** The pushed commit (`after`): 40 hex, lowercase. */
  sha: string;
  before?: string;
  /** Always false here: branch deletions come back as `ignored`. Kept so records say so plainly. */
  deleted: boolean;
  /** GitHub App installation that sent the push (GitHub only). */
  installationId?: number;
  defaultBranch: string;
  /** Who pushed (login or name), for the deploy record. */
  pusher: string;
  /** `repository.private`, when the payload says. */
  private?: boolean;
}

export interface PingEvent {
  kind: "ping";
  source: WebhookSource;
  deliveryId: string;
}

export interface IgnoredEvent {
  kind: "ignored";
  source: WebhookSource;
  deliveryId: string;
  /** A sentence a person can read in the delivery log, e.g. "tag push refs/tags/v1 is not deployed". */
  reason: string;
  fullName?: string;
  ref?: string;
}

export type WebhookEvent = PushEvent | PingEvent | IgnoredEvent;

function payloadInvalid(what: string): TabbifyError {
  return new TabbifyError("WEBHOOK_PAYLOAD_INVALID", `push payload invalid: ${what}`);
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function stringField(obj: Record<string, unknown>, key: string, where: string): string {
  const value = obj[key];
  if (typeof value !== "string" || value === "")
    throw payloadInvalid(`${where}${key} must be a non-empty string`);
  return value;
}

/**
 * Reads a delivery into what the pipeline needs. Non-push events, tag pushes and branch deletions
 * come back as `ignored` with a reason; `ping` is its own kind (the node answers 200). A push
 * whose payload lacks the fields a deploy needs throws WEBHOOK_PAYLOAD_INVALID.
 */
export function parsePushEvent(
  source: WebhookSource,
  eventName: string | undefined,
  deliveryId: string | undefined,
  body: unknown,
): WebhookEvent {
  if (deliveryId === undefined || deliveryId === "") throw payloadInvalid("delivery id header missing");
  if (eventName === undefined || eventName === "") throw payloadInvalid("event header missing");
  if (eventName === "ping") return { kind: "ping", source, deliveryId };
  if (eventName !== "push") {
    return { kind: "ignored", source, deliveryId, reason: `${eventName} events are not deployed` };
  }
  if (!isObject(body)) throw payloadInvalid("body is not a JSON object");
  const repository = body["repository"];
  if (!isObject(repository)) throw payloadInvalid("repository must be an object");
  const fullName = stringField(repository, "full_name", "repository.");
  const ref = stringField(body, "ref", "");
  const after = stringField(body, "after", "").toLowerCase();
  if (!/^[0-9a-f]{40}$/.test(after)) throw payloadInvalid("after must be a 40-hex commit sha");
  const deleted = body["deleted"] === true || ZERO_SHA.test(after);

  if (ref.startsWith("refs/tags/")) {
    const tag = ref.slice("refs/tags/".length);
    const reason = deleted ? `tag ${tag} deleted: nothing to deploy` : `tag push ${tag} is not deployed`;
    return { kind: "ignored", source, deliveryId, reason, fullName, ref };
  }
  if (!ref.startsWith("refs/heads/")) {
    return { kind: "ignored", source, deliveryId, reason: `push to ${ref} is not a branch`, fullName, ref };
  }
  const branch = ref.slice("refs/heads/".length);
  if (deleted) {
    return {
      kind: "ignored",
      source,
      deliveryId,
      reason: `branch ${branch} deleted: nothing to deploy`,
      fullName,
      ref,
    };
  }

  const repoUrl = stringField(repository, "clone_url", "repository.");
  const defaultBranch =
    typeof repository["default_branch"] === "string" ? repository["default_branch"] : branch;
  const pusherObj = body["pusher"];
  let pusher = "unknown";
  if (isObject(pusherObj)) {
    // GitHub sends {name, email}; Forgejo sends a user object with login/username.
    for (const key of ["login", "username", "name"]) {
      const value = pusherObj[key];
      if (typeof value === "string" && value !== "") {
        pusher = value;
        break;
      }
    }
  }
  const event: PushEvent = {
    kind: "push",
    source,
    deliveryId,
    repoUrl,
    fullName,
    ref,
    branch,
    sha: after,
    deleted: false,
    defaultBranch,
    pusher,
  };
  const before = body["before"];
  if (typeof before === "string") event.before = before;
  if (typeof repository["private"] === "boolean") event.private = repository["private"];
  const installation = body["installation"];
  if (isObject(installation) && typeof installation["id"] === "number")
    event.installationId = installation["id"];
  return event;
}

/**
 * Why a push does not deploy, or undefined when it does: only pushes to the app's configured
 * branch deploy, and the repository's default branch is the configured one unless the app says
 * otherwise.
 */
export function branchIgnoreReason(event: PushEvent, configuredBranch?: string): string | undefined {
  const wanted = configuredBranch ?? event.defaultBranch;
  if (event.branch === wanted) return undefined;
  return `push to branch ${event.branch ?? event.ref} ignored: the app deploys from ${wanted}`;
}

/**
 * The deploy that decides what a repository's app runs: the newest one of that repository (any
 * spelling of its URL) that is still running or succeeded on every target, when it is of commit
 * `sha`. A push
 * whose `after` is that commit redeploys nothing new, so the intake answers `already_deployed`
 * instead. A newer deploy of another commit (a revert pushed back) makes the older one no longer
 * current, so going back to it deploys again. `records` in any order.
 */
export function currentDeployOf(
  records: Iterable<DeployRecord>,
  repoUrl: string,
  sha: string,
): DeployRecord | undefined {
  const repo = canonicalRepoUrl(repoUrl);
  let current: DeployRecord | undefined;
  for (const record of records) {
    const live =
      isActive(record.status) || (record.status === "succeeded" && record.results.every((r) => r.success));
    if (!live) continue;
    if (canonicalRepoUrl(record.request.repoUrl) !== repo) continue;
    if (!current || record.created_at > current.created_at) current = record;
  }
  return current && deployedSha(current) === sha.toLowerCase() ? current : undefined;
}

/** The commit a deploy is of: the requested sha, else the tag of the image it built. */
function deployedSha(record: DeployRecord): string | undefined {
  if (record.request.sha) return record.request.sha.toLowerCase();
  const tag = record.image_ref?.split(":").at(-1);
  return tag && /^[0-9a-f]{40}$/i.test(tag) ? tag.toLowerCase() : undefined;
}

/**
 * Where the ledger keeps delivery ids so that a restarted node still recognises redeliveries.
 * `load` returns ids oldest first; `record` is told each new id and the ids the bound evicted.
 */
export interface DeliveryStore {
  load(): Promise<string[]>;
  record(id: string, evicted: readonly string[]): Promise<void>;
}

/**
 * Remembers the most recent `capacity` delivery ids. `claim` answers true exactly once per id,
 * also for concurrent redeliveries (the id is taken before the store is awaited).
 */
export class DeliveryLedger {
  readonly #ids = new Set<string>();
  readonly #capacity: number;
  readonly #store: DeliveryStore | undefined;

  private constructor(capacity: number, store: DeliveryStore | undefined) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new RangeError("capacity must be a positive integer");
    this.#capacity = capacity;
    this.#store = store;
  }

  /** A ledger primed with the store's ids (the newest `capacity` of them). */
  static async open(options: { capacity?: number; store?: DeliveryStore } = {}): Promise<DeliveryLedger> {
    const ledger = new DeliveryLedger(options.capacity ?? 10_000, options.store);
    if (options.store) {
      const ids = await options.store.load();
      for (const id of ids.slice(-ledger.#capacity)) ledger.#ids.add(id);
    }
    return ledger;
  }

  has(id: string): boolean {
    return this.#ids.has(id);
  }

  get size(): number {
    return this.#ids.size;
  }

  /** True when `id` is new (and now remembered); false for a redelivery. */
  async claim(id: string): Promise<boolean> {
    if (this.#ids.has(id)) return false;
    this.#ids.add(id);
    const evicted: string[] = [];
    // A Set iterates in insertion order, so the first entries are the oldest.
    for (const old of this.#ids) {
      if (this.#ids.size <= this.#capacity) break;
      this.#ids.delete(old);
      evicted.push(old);
    }
    if (this.#store) {
      try {
        await this.#store.record(id, evicted);
      } catch (err) {
        // Not persisted: forget it so the sender's retry is processed rather than silently dropped.
        this.#ids.delete(id);
        throw err;
      }
    }
    return true;
  }
}
