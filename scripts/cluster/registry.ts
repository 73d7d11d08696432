import { promises as fs } from 'node:fs';
import { join } from 'node:path';

/** The local registry's address, as kind and k3d offer one: `skaffold` pushes to it, the node pulls from it. */
export const REGISTRY = 'localhost:5000';

export async function writeRegistryConfig(dir: string): Promise<string> {
  const file = join(dir, 'registry.yml');
  await fs.writeFile(
    file,
    JSON.stringify({
      version: 0.1,
      log: { level: 'warn' },
      storage: { filesystem: { rootdirectory: join(dir, 'registry') } },
      // Loopback only: pushers and the node's containerd are all on this machine.
      http: { addr: `127.0.0.1:${REGISTRY.split(':')[1]}` },
    }),
  );
  return file;
}

/** containerd's host configuration: the local registry speaks plain HTTP, as Docker assumes for localhost. */
export async function writeRegistryHosts(certsDir: string): Promise<void> {
  await fs.mkdir(join(certsDir, REGISTRY), { recursive: true });
  await fs.writeFile(
    join(certsDir, REGISTRY, 'hosts.toml'),
    `server = "http://${REGISTRY}"\n\n[host."http://${REGISTRY}"]\n  capabilities = ["pull", "resolve"]\n`,
  );
}
