import { promises as fs } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { type BuiltService, startBuiltService } from './built-service';

// Stands in for a built service: listens where LISTEN_ADDR says, logs the line runService logs, answers with its
// environment, and stops on SIGTERM.
const FAKE_SERVICE = `
const { createServer } = require('node:http');
const [host, port] = process.env.LISTEN_ADDR.split(':');
const server = createServer((_req, res) => res.end(JSON.stringify({ greeting: process.env.GREETING ?? null })));
server.listen(Number(port), host, () => {
  console.log('[Nest] ' + process.pid + '  - LOG [fake] listening on http://' + host + ':' + server.address().port);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
`;

describe('startBuiltService', () => {
  let dir: string;
  let main: string;
  const started: BuiltService[] = [];

  beforeAll(async () => {
    dir = await fs.mkdtemp(join(tmpdir(), 'built-service-spec-'));
    main = join(dir, 'main.js');
    await fs.writeFile(main, FAKE_SERVICE);
  });
  afterAll(async () => {
    await Promise.all(started.map((s) => s.stop()));
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('starts the script on a free loopback port and reads its address from the log', async () => {
    const service = await startBuiltService({ app: 'api', main, logDir: join(dir, 'logs'), env: { GREETING: 'hi' } });
    started.push(service);

    expect(service.url).toBe(`http://127.0.0.1:${service.port}`);
    expect(service.port).toBeGreaterThan(0);
    expect(service.pid).toBe(service.process.pid);
    expect(await (await fetch(service.url)).json()).toEqual({ greeting: 'hi' });
    expect(basename(service.logFile)).toBe('api.log');
  });

  it('gives a second process of the same name a log of its own, and stops it by its pid', async () => {
    const first = await startBuiltService({ app: 'api', name: 'twice', main, logDir: dir });
    const second = await startBuiltService({ app: 'api', name: 'twice', main, logDir: dir });
    started.push(first, second);

    expect([basename(first.logFile), basename(second.logFile)]).toEqual(['twice.log', 'twice-2.log']);
    expect(second.port).not.toBe(first.port);
    await second.stop();
    expect(second.process.running).toBe(false);
    expect(first.process.running).toBe(true);
  });

  it('runs on the CPUs it is given', async () => {
    const service = await startBuiltService({ app: 'api', name: 'pinned', main, logDir: dir, cpus: '0' });
    started.push(service);
    const status = await fs.readFile(`/proc/${service.pid}/status`, 'utf8');
    expect(status).toMatch(/^Cpus_allowed_list:\s+0$/m);
    expect(await fs.readFile(`/proc/${service.pid}/cmdline`, 'utf8')).toContain(main);
  });

  it('says what to build when the script is missing', async () => {
    await expect(
      startBuiltService({ app: 'secret-store', main: join(dir, 'nowhere.js'), logDir: dir }),
    ).rejects.toThrow(/nowhere\.js is missing: build it first \(npx nx run-many -t build -p api secret-store\)/);
  });

  it('fails with the tail of its log when the process stops before listening', async () => {
    const broken = join(dir, 'broken.js');
    await fs.writeFile(broken, "console.error('LISTEN_ADDR must look like :8080'); process.exit(1);");
    await expect(startBuiltService({ app: 'api', name: 'broken', main: broken, logDir: dir })).rejects.toThrow(
      /broken stopped during start-up \(exit code 1\)[\s\S]*LISTEN_ADDR must look like/,
    );
  });
});
