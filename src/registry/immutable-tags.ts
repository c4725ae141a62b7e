import { TabbifyError } from "../core/errors.js";

/**
 * Tag immutability rules (`--immutable-tags 'acme/*:v*'`, repeatable): a `repo:tag` glob where
 * `*` matches any run of characters but `/` and `?` one such character, so `acme/*` is every
 * repository directly under acme/ and `acme/**` every one below it. A tag a rule matches keeps its
 * first digest: re-pushing the same manifest is fine, another one (or deleting it) is refused.
 */
export class ImmutableTags {
  private readonly rules: { repository: RegExp; tag: RegExp; text: string }[];

  constructor(patterns: readonly string[]) {
    this.rules = patterns.map((text) => {
      const colon = text.lastIndexOf(":");
      if (colon <= 0 || colon === text.length - 1) {
        throw new TabbifyError(
          "CONFIG_INVALID",
          `immutable tag rule "${text.slice(0, 200)}" is not <repository glob>:<tag glob> (e.g. acme/*:v*)`,
        );
      }
      return { repository: glob(text.slice(0, colon)), tag: glob(text.slice(colon + 1)), text };
    });
  }

  get size(): number {
    return this.rules.length;
  }

  /** The rule that makes `name:tag` immutable, if one does. */
  match(name: string, tag: string): string | undefined {
    return this.rules.find((r) => r.repository.test(name) && r.tag.test(tag))?.text;
  }
}

function glob(pattern: string): RegExp {
  let out = "";
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === "*" && pattern[i + 1] === "*") {
      out += ".*";
      i++;
    } else if (c === "*") out += "[^/]*";
    else if (c === "?") out += "[^/]";
    else out += c.replace(/[\\^$.|+()[\]{}]/g, "\\$&");
  }
  return new RegExp(`^${out}$`);
}
