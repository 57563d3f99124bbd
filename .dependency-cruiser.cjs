/**
 * The direction of imports between the folders of src/ (docs/architecture.md, "Layers"):
 *
 *   main.ts, server.ts → http/ → services (ingest/, query/, admin/, lifecycle/, tokens/)
 *     → catalog/, jobs/, engine/, storage/ → model/
 *   main.ts → client/ (a client of a server, over HTTP) → config.ts, engine/ (reading Parquet files)
 *
 * Every import counts, type-only and dynamic ones included. test/architecture.test.ts runs
 * `depcruise src` with this file (so the suite fails on a violation) and checks that each rule
 * still catches a violation planted in a scratch tree.
 */
const SERVICES = '(ingest|query|admin|lifecycle|tokens)';

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'nothing-imports-http',
      comment: 'Only http/ itself, server.ts (the composition root) and main.ts import http/.',
      severity: 'error',
      from: { path: '^src/', pathNot: ['^src/http/', '^src/server\\.ts$', '^src/main\\.ts$'] },
      to: { path: '^src/http/' },
    },
    {
      name: 'services-do-not-import-each-other',
      comment: 'What two services share belongs in model/ or a lower layer.',
      severity: 'error',
      from: { path: `^src/${SERVICES}/` },
      to: { path: `^src/${SERVICES}/`, pathNot: '^src/$1/' },
    },
    {
      name: 'lower-layers-import-no-service',
      comment: 'catalog/, jobs/, engine/, storage/ and model/ sit below the services and the composition root.',
      severity: 'error',
      from: { path: '^src/(catalog|jobs|engine|storage|model)/' },
      to: { path: [`^src/${SERVICES}/`, '^src/(server|main)\\.ts$'] },
    },
    {
      name: 'engine-imports-no-catalog',
      comment: 'Worker threads never open PostgreSQL.',
      severity: 'error',
      from: { path: '^src/engine/' },
      to: { path: '^src/catalog/' },
    },
    {
      name: 'storage-imports-no-catalog',
      comment: 'Storage moves bytes and knows no catalog.',
      severity: 'error',
      from: { path: '^src/storage/' },
      to: { path: '^src/catalog/' },
    },
    {
      name: 'model-imports-only-libraries',
      comment: 'The words of the domain import nothing else from src/.',
      severity: 'error',
      from: { path: '^src/model/' },
      to: { path: '^src/', pathNot: '^src/model/' },
    },
    {
      name: 'client-speaks-only-http',
      comment: 'The client commands reach a server over HTTP only: no service, catalog, jobs or storage of their own process.',
      severity: 'error',
      from: { path: '^src/client/' },
      to: { path: [`^src/${SERVICES}/`, '^src/(catalog|jobs|storage|http)/'] },
    },
    {
      name: 'no-cycles',
      comment: 'No cycle of imports, type-only ones included: a cycle means two modules are one concept split in two.',
      severity: 'error',
      from: { path: '^src/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count for the direction rules (a type is a dependency on its declaration).
    tsPreCompilationDeps: true,
  },
};
