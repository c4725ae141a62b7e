/**
 * Which keys of a parsed TOML document its parser never looked at. A manifest parser reads its
 * document through `trackKeyReads`, then refuses whatever `unreadKeys` lists: a key nothing reads
 * would be accepted and ignored, and a user who writes it (or misspells a real one) believes it
 * acts. Reading a key (`get`, `in`) counts; enumerating a table (`Object.entries`, a spread) counts
 * for every key in it, since the parser then decides about each one itself (an `[env]` map).
 */

export type TomlKeyPath = (string | number)[];

export interface KeyReads<T> {
  /** The document to parse: reads through it are recorded. */
  doc: T;
  /** The first key (depth first, in document order) that nothing read, or undefined. */
  firstUnread(): TomlKeyPath | undefined;
}

const isPlainTable = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

const pathKey = (path: TomlKeyPath) => JSON.stringify(path);

export function trackKeyReads<T extends Record<string, unknown>>(doc: T): KeyReads<T> {
  const read = new Set<string>();
  const wrappers = new WeakMap<object, object>();

  const wrap = (value: unknown, path: TomlKeyPath): unknown => {
    if (!isPlainTable(value) && !Array.isArray(value)) return value;
    const known = wrappers.get(value);
    if (known) return known;
    const table = isPlainTable(value);
    const proxy = new Proxy(value, {
      get(target, key, receiver) {
        const child = Reflect.get(target, key, receiver);
        if (typeof key !== "string" || !Object.hasOwn(target, key)) return child;
        const at = [...path, Array.isArray(target) ? Number(key) : key];
        if (table) read.add(pathKey(at));
        return wrap(child, at);
      },
      has(target, key) {
        if (table && typeof key === "string") read.add(pathKey([...path, key]));
        return Reflect.has(target, key);
      },
      ownKeys(target) {
        if (table) for (const key of Object.keys(target)) read.add(pathKey([...path, key]));
        return Reflect.ownKeys(target);
      },
    });
    wrappers.set(value, proxy);
    return proxy;
  };

  const firstUnreadIn = (value: unknown, path: TomlKeyPath): TomlKeyPath | undefined => {
    if (Array.isArray(value)) {
      for (const [i, item] of value.entries()) {
        const found = firstUnreadIn(item, [...path, i]);
        if (found) return found;
      }
      return undefined;
    }
    if (!isPlainTable(value)) return undefined;
    for (const [key, child] of Object.entries(value)) {
      const at = [...path, key];
      if (!read.has(pathKey(at))) return at;
      const found = firstUnreadIn(child, at);
      if (found) return found;
    }
    return undefined;
  };

  return { doc: wrap(doc, []) as T, firstUnread: () => firstUnreadIn(doc, []) };
}

/** `a.b[2].c`, as errors name a key. */
export function tomlKeyName(path: TomlKeyPath): string {
  return path.map((p, i) => (typeof p === "number" ? `[${p}]` : i === 0 ? p : `.${p}`)).join("");
}
