import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface ImageSpec {
  /** The full reference containerd lists it under, e.g. `localhost/k8s-auth/pause:1`. */
  name: string;
  /** Files copied into the root of the single layer, mode 0755. */
  files?: Record<string, string>;
  /** Or a folder made ready beforehand, taken whole as the layer. */
  rootfs?: string;
  /** Environment of the image's config, e.g. `PATH=/usr/bin`. */
  env?: string[];
  workingDir?: string;
  entrypoint: string[];
  user?: string;
}

function sha256(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/**
 * Writes an OCI image layout tarball of one layer made of `files`, the format `ctr images import` reads. Tar comes from
 * the system; the layer is reproducible (sorted, owned by root, mtime 0), so the same binaries give the same digest.
 */
export async function writeImageTarball(spec: ImageSpec, workDir: string): Promise<string> {
  const rootfs = spec.rootfs ?? join(workDir, 'rootfs');
  const layout = join(workDir, 'layout');
  await fs.mkdir(rootfs, { recursive: true });
  await fs.mkdir(join(layout, 'blobs', 'sha256'), { recursive: true });
  for (const [name, source] of Object.entries(spec.files ?? {})) {
    await fs.copyFile(source, join(rootfs, name));
    await fs.chmod(join(rootfs, name), 0o755);
  }
  const layerPath = join(workDir, 'layer.tar');
  await run('tar', [
    '--sort=name',
    '--owner=0',
    '--group=0',
    '--numeric-owner',
    '--mtime=@0',
    '-C',
    rootfs,
    '-cf',
    layerPath,
    ...(spec.rootfs ? ['.'] : Object.keys(spec.files ?? {})),
  ]);
  const blob = async (data: Buffer) => {
    const digest = sha256(data);
    await fs.writeFile(join(layout, 'blobs', 'sha256', digest.slice(7)), data);
    return { digest, size: data.length };
  };
  const layer = await blob(await fs.readFile(layerPath));
  const config = await blob(
    Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: {
          Entrypoint: spec.entrypoint,
          ...(spec.user ? { User: spec.user } : {}),
          ...(spec.env ? { Env: spec.env } : {}),
          ...(spec.workingDir ? { WorkingDir: spec.workingDir } : {}),
        },
        rootfs: { type: 'layers', diff_ids: [layer.digest] },
      }),
    ),
  );
  const manifest = await blob(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.oci.image.manifest.v1+json',
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
      }),
    ),
  );
  const tag = spec.name.slice(spec.name.lastIndexOf(':') + 1);
  await fs.writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await fs.writeFile(
    join(layout, 'index.json'),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          ...manifest,
          platform: { architecture: 'amd64', os: 'linux' },
          annotations: { 'io.containerd.image.name': spec.name, 'org.opencontainers.image.ref.name': tag },
        },
      ],
    }),
  );
  const tarball = join(workDir, 'image.tar');
  await run('tar', ['-C', layout, '-cf', tarball, 'oci-layout', 'index.json', 'blobs']);
  return tarball;
}
