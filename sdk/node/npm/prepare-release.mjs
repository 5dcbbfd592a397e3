// Prepares the npm packages for publishing (used by .github/workflows/release-node.yml and
// by scripts/test_artifacts.sh, so the artifact test packs exactly what is published).
//
//   node npm/prepare-release.mjs [--out DIR] [--require-binaries]
//
// - Checks that every target of package.json `napi.targets` has its package in npm/<platform>/
//   and that each of those packages carries the main package's version.
// - Writes `optionalDependencies` (every platform package, at exactly that version) into the
//   main package's package.json: into DIR/package.json, with the package's published files
//   copied to DIR, when --out is given; in place otherwise (a CI checkout).
//   They are not kept in the committed package.json: `npm ci` would then need every
//   platform package in package-lock.json, and none exists before the first release.
// - With --require-binaries, checks that each npm/<platform>/ holds its `.node` file
//   (after `napi artifacts`).
// Prints the platform package directories, one per line, for the publishing loop.
import { copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const packageDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
const out = outIndex === -1 ? null : resolve(args[outIndex + 1] ?? '');
const requireBinaries = args.includes('--require-binaries');

const fail = (message) => {
  console.error(`prepare-release: ${message}`);
  process.exit(1);
};
const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'));

const main = readJson(join(packageDir, 'package.json'));
const { version } = main;
const binaryName = main.napi?.binaryName;
const targets = main.napi?.targets ?? [];
if (!binaryName || targets.length === 0) fail('package.json has no napi.binaryName / napi.targets');

// The npm/<platform> directory name of each Rust target, as napi-rs names them.
const platformOf = (triple) => {
  const parts = triple.split('-');
  const cpu = { x86_64: 'x64', aarch64: 'arm64' }[parts[0]];
  if (cpu && triple.endsWith('-apple-darwin')) return `darwin-${cpu}`;
  if (cpu && parts[2] === 'windows') return `win32-${cpu}-${parts[3]}`;
  if (cpu && parts[2] === 'linux') return `linux-${cpu}-${parts[3]}`;
  return fail(`unsupported target ${triple} (extend platformOf)`);
};

const npmDir = join(packageDir, 'npm');
const platforms = targets.map(platformOf);
const onDisk = readdirSync(npmDir, { withFileTypes: true })
  .filter((entry) => entry.isDirectory())
  .map((entry) => entry.name);
for (const extra of onDisk.filter((name) => !platforms.includes(name))) {
  fail(`npm/${extra}/ is not a target of package.json napi.targets`);
}

const optionalDependencies = {};
for (const platform of platforms) {
  const manifest = join(npmDir, platform, 'package.json');
  if (!existsSync(manifest)) fail(`npm/${platform}/package.json is missing (npx napi create-npm-dirs)`);
  const pkg = readJson(manifest);
  if (pkg.name !== `${main.name}-${platform}`) fail(`npm/${platform}: name ${pkg.name}, expected ${main.name}-${platform}`);
  if (pkg.version !== version) fail(`npm/${platform}: version ${pkg.version}, expected ${version} (scripts/bump_version.sh)`);
  const binary = `${binaryName}.${platform}.node`;
  if (pkg.main !== binary || !pkg.files?.includes(binary)) fail(`npm/${platform}: main/files must be ${binary}`);
  if (requireBinaries && !existsSync(join(npmDir, platform, binary))) fail(`npm/${platform}/${binary} is missing (napi artifacts)`);
  optionalDependencies[pkg.name] = version;
}

const released = { ...main, optionalDependencies };
let target = packageDir;
if (out) {
  mkdirSync(out, { recursive: true });
  for (const file of [...main.files, 'README.md']) {
    if (file.includes('*')) fail(`files entry ${file}: only plain file names are supported`);
    copyFileSync(join(packageDir, file), join(out, file));
  }
  target = out;
}
writeFileSync(join(target, 'package.json'), `${JSON.stringify(released, null, 2)}\n`);
for (const platform of platforms) console.log(join(npmDir, platform));
