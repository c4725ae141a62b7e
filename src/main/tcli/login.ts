import type { Command } from "commander";
import {
  approveDevice,
  awaitDeviceToken,
  denyDevice,
  deviceInstructions,
  startDeviceLogin,
} from "../../cli/device-login.js";
import { readHiddenLine, readStdinToken } from "../../cli/input.js";
import { login, logout } from "../../cli/node-commands.js";
import { formatLogin } from "../../cli/node-output.js";
import { TabbifyError } from "../../core/errors.js";
import { NodeClient } from "../../node/client.js";
import { type CommonOpts, clientFor, examples, home, nodeUrlOf, print, withCommon } from "./kit.js";

/** `tcli login` (a token, stdin, or device login; approve/deny a device) and `tcli logout`. */

interface LoginOpts extends CommonOpts {
  tokenStdin?: boolean;
  device?: boolean;
  tenant?: string;
  subject?: string;
}

export function registerLoginCommands(program: Command): void {
  withCommon(
    program.command("login").summary("log in to a node: a token, or device login; approve or deny a device"),
  )
    .usage("[approve|deny <user_code>] [flags]")
    .argument("[action]", "approve or deny: answer another terminal's device login")
    .argument("[user_code]", "the code the waiting terminal shows (XXXX-XXXX)")
    .option("--token-stdin", "read the token from stdin (for CI) instead of prompting")
    .option("--device", "device login (RFC 8628) without prompting: wait for someone to approve the code")
    .option("--tenant <name>", "approve: the tenant the device gets a token for (needed with the node key)")
    .option("--subject <name>", "approve: who the device's token is for (default: yours, or device-login)")
    .addHelpText(
      "after",
      "\nThe token is the node key (admin) or a tenant token from `tabbify auth token`. It is checked\n" +
        "against the node first, then saved in ~/.tabbify/credentials (0600), one entry per node URL.\n" +
        "It is never taken as an argument: argv is visible to every user of the machine.\n" +
        "An empty token at the prompt (or --device) starts device login: tcli shows a code, and someone\n" +
        "logged in approves it with `tcli login approve CODE`; this terminal then gets a tenant token." +
        examples(
          "tcli login --node http://127.0.0.1:8090",
          "printf '%s\\n' \"$TABBIFY_NODE_KEY\" | tcli login --token-stdin",
          "tcli login --device --node https://tabbify.example",
          "tcli login approve BCDF-GHJK --tenant dev",
          "tcli login deny BCDF-GHJK",
        ),
    )
    .action(async (action: string | undefined, userCode: string | undefined, opts: LoginOpts) => {
      if (action !== undefined) return answerDevice(action, userCode, opts);
      const url = nodeUrlOf(opts);
      let token = "";
      if (opts.tokenStdin) {
        token = await readStdinToken(process.stdin);
        if (token === "")
          throw new TabbifyError("USAGE", "stdin held no token: pipe one, or use --device for device login");
      } else if (!opts.device) {
        if (!process.stdin.isTTY) {
          throw new TabbifyError(
            "USAGE",
            "stdin is not a terminal, so there is nothing to prompt on: pipe the token with --token-stdin, or use --device",
          );
        }
        token = await readHiddenLine(
          `token for ${url} (empty: device login): `,
          process.stdin,
          process.stderr,
        );
      }
      if (token === "") {
        const anonymous = new NodeClient({ url });
        const grant = await startDeviceLogin(anonymous);
        process.stderr.write(deviceInstructions(grant, url));
        token = await awaitDeviceToken(anonymous, grant, {
          onSlowDown: (s) => process.stderr.write(`the node asked to poll slower: every ${s} s\n`),
        });
      }
      print(opts, await login(new NodeClient({ url, token }), token, home()), formatLogin);
    });

  withCommon(program.command("logout").summary("forget the saved token for a node"))
    .addHelpText("after", examples("tcli logout", "tcli logout --node https://tabbify.example"))
    .action(async (opts: CommonOpts) => {
      print(opts, await logout(nodeUrlOf(opts), home()), (r) =>
        r.forgotten ? `logged out of ${r.node}\n` : `no saved token for ${r.node}\n`,
      );
    });
}

async function answerDevice(action: string, userCode: string | undefined, opts: LoginOpts): Promise<void> {
  if (action !== "approve" && action !== "deny") {
    throw new TabbifyError(
      "USAGE",
      `tcli login takes approve or deny before a code, not "${action.slice(0, 20)}"`,
    );
  }
  if (!userCode)
    throw new TabbifyError("USAGE", `tcli login ${action} needs the code: tcli login ${action} XXXX-XXXX`);
  const client = await clientFor(opts);
  if (action === "deny") {
    print(opts, await denyDevice(client, userCode), () => `refused the device login ${userCode}\n`);
    return;
  }
  const asked: { tenant?: string; subject?: string } = {};
  if (opts.tenant) asked.tenant = opts.tenant;
  if (opts.subject) asked.subject = opts.subject;
  print(
    opts,
    await approveDevice(client, userCode, asked),
    (r) =>
      `approved ${userCode}: the device gets a token for tenant ${r.tenant} (subject ${r.subject}, ${Math.round(r.token_ttl_secs / 3600)} h)\n`,
  );
}
