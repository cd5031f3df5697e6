import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { STAGES } from '../../src/pipeline/engine';

/*
 * The README's table "How a check is decided" is the map a newcomer reads the pipeline from;
 * the engine's stage list is the pipeline. They must name the same modules in the same order.
 */

const ROOT = path.resolve(__dirname, '..', '..');
const STAGE_DIR = 'src/pipeline/stages';

interface Row {
  stage: string;
  module: string;
}

function readmeRows(): Row[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf('## How a check is decided');
  expect(start).toBeGreaterThanOrEqual(0);
  const section = readme.slice(start, readme.indexOf('\n## ', start + 1));
  const rows: Row[] = [];
  for (const line of section.split('\n')) {
    if (!line.startsWith('|') || line.startsWith('|---') || line.startsWith('| stage ')) continue;
    const cells = line.split('|').map((cell) => cell.trim());
    const module = /`([^`]+)`/.exec(cells[2] ?? '');
    if (module === null) throw new Error(`README row without a module path: ${line}`);
    rows.push({ stage: cells[1]!, module: module[1]! });
  }
  return rows;
}

describe('the pipeline as the README describes it', () => {
  const rows = readmeRows();

  test('every row names a module that exists', () => {
    expect(rows.length).toBeGreaterThan(STAGES.length);
    for (const row of rows)
      expect([row.module, existsSync(path.join(ROOT, row.module))]).toEqual([row.module, true]);
  });

  test("the table's stage modules are the engine's stages, in the engine's order, then respond and audit", () => {
    const engineOrder = STAGES.map((stage) => `${STAGE_DIR}/${stage.name}.ts`);
    expect(rows.slice(0, STAGES.length).map((row) => row.module)).toEqual(engineOrder);
    expect(rows.slice(STAGES.length).map((row) => row.stage)).toEqual(['respond', 'audit']);
  });

  test('each stage is the one its module exports, and no stage module is left out of the list', () => {
    for (const stage of STAGES) {
      const exported = Object.values(require(path.join(ROOT, STAGE_DIR, stage.name)) as object);
      expect([stage.name, exported.includes(stage)]).toEqual([stage.name, true]);
    }
    const files = readdirSync(path.join(ROOT, STAGE_DIR)).map((file) => file.replace(/\.ts$/, ''));
    expect(files.sort()).toEqual(STAGES.map((stage) => stage.name).sort());
  });
});
