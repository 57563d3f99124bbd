/**
 * Loaded before the test files (bunfig.toml): a hook here runs once for the whole run. Bun's test
 * runner ends without the process's `exit` event, so the PostgreSQL clusters the harness started
 * are stopped here, after the last file, instead of being left running.
 */
import { afterAll } from 'bun:test';
import { stopClusters } from './postgres.ts';

afterAll(stopClusters);
