import assert from "node:assert/strict";
import { test } from "node:test";
import { formatTomlSyntaxError, isTomlSyntaxError, parseTomlDocument } from "./toml-errors.js";

function errorOf(source: string): string {
  try {
    parseTomlDocument(source);
  } catch (err) {
    assert.ok(isTomlSyntaxError(err), String(err));
    return formatTomlSyntaxError(err);
  }
  assert.fail(`parsed: ${JSON.stringify(source)}`);
}

test("TOML syntax errors name the user's mistake and where it is", () => {
  const table: Array<[string, string]> = [
    ['[app]\nname = "abc\n', '2:12: unterminated string: the closing " is missing on this line'],
    ["[app]\nname = 'abc\n", "2:12: unterminated string: the closing ' is missing on this line"],
    ["[app\nname = 1\n", "1:5: unterminated table header: [app needs a closing ]"],
    ['[app]\nname "x"\n', '2:6: expected key = value: "name \\"x\\"" has no = after its key'],
    [
      "[app]\nname = hello\n",
      '2:8: invalid value "hello": text needs quotes ("…"); other values are true, false, numbers, dates, [ ] or { }',
    ],
    ["[app]\nmode = \n", "2:8: missing value: nothing follows the ="],
    ['[app]\nname = "x"\nname = "y"\n', "3:1: name is defined twice (or clashes with a table of that name)"],
    ["[app]\n[app]\n", "2:2: table [app] is defined twice (or clashes with a table of that name)"],
    [
      "cmd = [1, 2\n",
      "2:1: unclosed array or inline table: a closing ] or } (or a comma between items) is missing",
    ],
    ["x = 1 2\n", "1:7: unexpected text after the value: one key = value per line (a comment starts with #)"],
  ];
  for (const [source, expected] of table) assert.equal(errorOf(source), expected, JSON.stringify(source));
});

test("a valid document parses, and a non-syntax error is not dressed up", () => {
  assert.equal(JSON.stringify(parseTomlDocument('[app]\nname = "x"\n')), '{"app":{"name":"x"}}');
  assert.equal(isTomlSyntaxError(new Error("x")), false);
});
