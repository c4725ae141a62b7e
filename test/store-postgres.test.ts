import { after, before } from "node:test";
import { deployStoreSuite } from "../src/node/deploy-store-suite.js";
import { storeSuite } from "../src/store/store-suite.js";
import { type PostgresServer, startPostgres } from "./support/postgres.js";

let server: PostgresServer;
before(async () => {
  server = await startPostgres();
});
after(() => server?.stop());

storeSuite("postgres", async () => ({ engine: "postgres", url: await server.createDatabase() }));
deployStoreSuite("postgres", () => server.createDatabase());
