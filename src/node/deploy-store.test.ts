import { deployStoreSuite } from "./deploy-store-suite.js";

deployStoreSuite("sqlite", async () => undefined);
