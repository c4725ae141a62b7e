import { Type } from "@sinclair/typebox";
import { errorResponses } from "../node/schemas/common.js";

/** Route descriptions for the dashboard's session API (the pages themselves are hidden: HTML). */

const Who = {
  actor: Type.String({ description: "Who the session acts as, as the audit chain names it" }),
  tenant: Type.Union([Type.String(), Type.Null()], { description: "null for the node key" }),
};
const LoginAnswer = Type.Object({
  ...Who,
  csrf_token: Type.String({
    description: "Send as x-csrf-token on EVERY request the session cookie carries (reads too)",
  }),
});
const SessionAnswer = Type.Object(Who);

const tags = ["dashboard"];
const cookie = [{ dashboardSession: [] }];

export const dashboardSchemas = {
  login: {
    summary: "Log the dashboard in with a node key or tenant token; answers a session cookie",
    description:
      "Sets an HttpOnly, SameSite=Strict session cookie. The token stays on the node; requests with the cookie then act as that token when they carry x-csrf-token (a write without it is refused, a read without it acts as nobody). Failed logins are limited per client address and per credential: 429 with Retry-After.",
    tags,
    security: [],
    body: Type.Object(
      { token: Type.String({ minLength: 1, maxLength: 8192 }) },
      { additionalProperties: false },
    ),
    response: { 200: LoginAnswer, ...errorResponses },
  },
  logout: {
    summary: "End the dashboard session (needs x-csrf-token)",
    tags,
    security: cookie,
    response: { 204: Type.Null(), ...errorResponses },
  },
  session: {
    summary: "Who the dashboard session is (needs x-csrf-token, which a dashboard page carries)",
    tags,
    security: cookie,
    response: { 200: SessionAnswer, ...errorResponses },
  },
  /** index.html and the hashed assets: not API, so not in the document. */
  page: { hide: true },
};
