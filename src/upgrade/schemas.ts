/** Route schemas of the supervisor's platform routes (supervisor-handoff.ts, runner-restart.ts). */
import { Type } from "@sinclair/typebox";

const supervisorKey = [{ supervisorKey: [] as string[] }];
const Failure = Type.Object(
  { error: Type.String(), code: Type.Optional(Type.String()) },
  { additionalProperties: true },
);
const errors = { "4xx": Failure, "5xx": Failure } as const;
const handoffShape =
  'send a release tarball as application/octet-stream, or {"version"} of a release kept here';

/** The JSON body: a release this host kept, by version. */
export const HandoffByVersion = Type.Object(
  {
    version: Type.String({
      pattern: "^[0-9A-Za-z][0-9A-Za-z.+-]{0,63}$",
      "x-message": handoffShape,
      "x-required": handoffShape,
    }),
  },
  { additionalProperties: true, "x-message": handoffShape },
);

export const supervisorHandoffSchema = {
  summary: "Replace this supervisor with another release of itself, handing its socket over",
  description:
    "The body is a release tarball (application/octet-stream), or JSON {version} of a release this host kept. Answers once the new process answers ready on the same port; the old one then exits. Runners keep running.",
  tags: ["platform"],
  security: supervisorKey,
  body: {
    content: {
      "application/json": {
        schema: HandoffByVersion,
      },
      "application/octet-stream": { schema: Type.Unsafe<unknown>({ description: "the release tarball" }) },
      "application/gzip": { schema: Type.Unsafe<unknown>({ description: "the release tarball" }) },
    },
  },
  response: {
    200: Type.Object({
      version: Type.String({ description: "the release the new process runs" }),
      ready_ms: Type.Integer({ description: "from its start until it answered ready" }),
    }),
    ...errors,
  },
};
