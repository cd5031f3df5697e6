import { createHash } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import { parseAllDocuments } from 'yaml';

/**
 * A renderer for the subset of kustomize the repository's Kubernetes material uses, so the
 * tests can check what `kubectl apply -k` would send: resources (files and directories),
 * components, namespace, labels, configMapGenerator (files, behavior, disableNameSuffixHash),
 * images and strategic-merge patches. Any other field is an error here, never silently
 * ignored: a field this renderer does not know would make the checks pass on a wrong picture.
 */
export type Obj = Record<string, unknown>;

const KUSTOMIZATION_KEYS = new Set([
  'apiVersion',
  'kind',
  'namespace',
  'labels',
  'resources',
  'components',
  'configMapGenerator',
  'images',
  'patches',
]);
/** Kinds without a namespace: the namespace transformer leaves them alone. */
const CLUSTER_SCOPED = new Set([
  'Namespace',
  'PriorityClass',
  'ClusterRole',
  'ClusterRoleBinding',
  'CustomResourceDefinition',
  'StorageClass',
  'ValidatingWebhookConfiguration',
  'MutatingWebhookConfiguration',
]);
/** Lists that strategic merge patches merge by a key instead of replacing. */
const MERGE_KEYS: Record<string, string> = {
  containers: 'name',
  initContainers: 'name',
  volumes: 'name',
  volumeMounts: 'mountPath',
  env: 'name',
  ports: 'containerPort',
  configMapGenerator: 'name',
};

function isObj(v: unknown): v is Obj {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function loadDocs(file: string): Obj[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`${file}: ${d.errors[0]!.message}`);
      return d.toJS() as Obj;
    })
    .filter(isObj);
}

function kustomizationOf(dir: string): Obj {
  const file = path.join(dir, 'kustomization.yaml');
  if (!existsSync(file)) throw new Error(`${dir} has no kustomization.yaml`);
  const [k] = loadDocs(file);
  if (!k) throw new Error(`${file} is empty`);
  for (const key of Object.keys(k))
    if (!KUSTOMIZATION_KEYS.has(key))
      throw new Error(`${file}: '${key}' is not supported by this renderer`);
  return k;
}

/** Renders the kustomization in `dir` to the objects it would apply. */
export function renderKustomization(dir: string): Obj[] {
  const k = kustomizationOf(dir);
  if (k['kind'] === 'Component')
    throw new Error(`${dir} is a Component: render a Kustomization that uses it`);
  const objects = build(dir, k);
  for (const o of objects) {
    const meta = o['metadata'] as Obj;
    const annotations = Object.entries((meta['annotations'] as Obj | undefined) ?? {}).filter(
      ([key]) => !key.startsWith('gatehouse.test/'),
    );
    if (annotations.length > 0) meta['annotations'] = Object.fromEntries(annotations);
    else delete meta['annotations'];
  }
  return objects;
}

function build(dir: string, k: Obj): Obj[] {
  let objects: Obj[] = [];
  for (const r of (k['resources'] as string[] | undefined) ?? []) {
    const target = path.resolve(dir, r);
    objects.push(
      ...(statSync(target).isDirectory() ? renderKustomization(target) : loadDocs(target)),
    );
  }
  objects = applyLayer(dir, k, objects);
  for (const c of (k['components'] as string[] | undefined) ?? []) {
    const cdir = path.resolve(dir, c);
    const component = kustomizationOf(cdir);
    if (component['kind'] !== 'Component') throw new Error(`${cdir} is not a Component`);
    const added = ((component['resources'] as string[] | undefined) ?? []).flatMap((r) =>
      loadDocs(path.resolve(cdir, r)),
    );
    objects = applyLayer(cdir, { ...component, resources: [] }, [...objects, ...added]);
    // A component's objects get the using kustomization's namespace and labels too.
    objects = applyLayer(dir, { namespace: k['namespace'], labels: k['labels'] }, objects);
  }
  return objects;
}

function applyLayer(dir: string, k: Obj, input: Obj[]): Obj[] {
  let objects = input.map((o) => structuredClone(o));
  const renames = new Map<string, string>();
  for (const g of (k['configMapGenerator'] as Obj[] | undefined) ?? []) {
    const name = String(g['name']);
    const data: Record<string, string> = {};
    for (const entry of (g['files'] as string[] | undefined) ?? []) {
      const [key, file] = entry.includes('=')
        ? [entry.slice(0, entry.indexOf('=')), entry.slice(entry.indexOf('=') + 1)]
        : [path.basename(entry), entry];
      data[key] = readFileSync(path.resolve(dir, file), 'utf8');
    }
    const behavior = String(g['behavior'] ?? 'create');
    const options = (g['options'] as Obj | undefined) ?? {};
    const existing = objects.find(
      (o) => o['kind'] === 'ConfigMap' && (o['metadata'] as Obj)['name'] === name,
    );
    let configMap: Obj;
    if (behavior === 'create') {
      if (existing)
        throw new Error(
          `${dir}: ConfigMap ${name} already exists (use behavior: replace or merge)`,
        );
      configMap = { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data };
      objects.push(configMap);
    } else {
      if (!existing)
        throw new Error(
          `${dir}: behavior ${behavior} of ConfigMap ${name}, which no base generates`,
        );
      existing['data'] = behavior === 'replace' ? data : { ...(existing['data'] as Obj), ...data };
      configMap = existing;
    }
    if (options['disableNameSuffixHash'] === true)
      (configMap['metadata'] as Obj)['annotations'] = {
        ...((configMap['metadata'] as Obj)['annotations'] as Obj),
        'gatehouse.test/no-hash': 'true',
      };
  }
  for (const p of (k['patches'] as Obj[] | undefined) ?? []) {
    const patch =
      p['path'] !== undefined
        ? loadDocs(path.resolve(dir, String(p['path'])))[0]!
        : (parseAllDocuments(String(p['patch']))[0]!.toJS() as Obj);
    const kind = patch['kind'];
    const name = (patch['metadata'] as Obj | undefined)?.['name'];
    const target = objects.find(
      (o) => o['kind'] === kind && (o['metadata'] as Obj)['name'] === name,
    );
    if (!target)
      throw new Error(
        `${dir}: patch for ${String(kind)} ${String(name)}, which is not in the resources`,
      );
    objects = objects.map((o) => (o === target ? (strategicMerge(o, patch) as Obj) : o));
  }
  if (typeof k['namespace'] === 'string') {
    for (const o of objects)
      if (!CLUSTER_SCOPED.has(String(o['kind'])))
        (o['metadata'] as Obj)['namespace'] = k['namespace'];
  }
  for (const l of (k['labels'] as Obj[] | undefined) ?? []) {
    if (l['includeSelectors'] === true || l['includeTemplates'] === true)
      throw new Error(
        `${dir}: labels with includeSelectors/includeTemplates are not supported by this renderer`,
      );
    for (const o of objects) {
      const meta = o['metadata'] as Obj;
      meta['labels'] = { ...(meta['labels'] as Obj | undefined), ...(l['pairs'] as Obj) };
    }
  }
  for (const image of (k['images'] as Obj[] | undefined) ?? []) {
    for (const c of containersOf(objects)) {
      const ref = String(c['image']);
      const bare = ref.replace(/@.*$/, '').replace(/:[^/:]*$/, '');
      if (bare !== image['name']) continue;
      const tag =
        image['digest'] !== undefined
          ? `@${String(image['digest'])}`
          : image['newTag'] !== undefined
            ? `:${String(image['newTag'])}`
            : ref.slice(bare.length);
      c['image'] = `${String(image['newName'] ?? bare)}${tag}`;
    }
  }
  // Generated names get kustomize's content-hash suffix unless disabled; references follow.
  for (const o of objects) {
    if (o['kind'] !== 'ConfigMap') continue;
    const meta = o['metadata'] as Obj;
    const annotations = meta['annotations'] as Obj | undefined;
    if (
      annotations?.['gatehouse.test/no-hash'] === 'true' ||
      annotations?.['gatehouse.test/hashed'] === 'true' ||
      !(k['configMapGenerator'] as Obj[] | undefined)?.some((g) => g['name'] === meta['name'])
    )
      continue;
    const hashed = `${String(meta['name'])}-${createHash('sha256').update(JSON.stringify(o['data'])).digest('hex').slice(0, 10)}`;
    renames.set(String(meta['name']), hashed);
    meta['name'] = hashed;
    meta['annotations'] = { ...annotations, 'gatehouse.test/hashed': 'true' };
  }
  for (const o of objects) {
    for (const v of ((
      ((o['spec'] as Obj | undefined)?.['template'] as Obj | undefined)?.['spec'] as Obj | undefined
    )?.['volumes'] as Obj[] | undefined) ?? []) {
      const cm = v['configMap'] as Obj | undefined;
      if (cm && renames.has(String(cm['name']))) cm['name'] = renames.get(String(cm['name']));
    }
  }
  return objects;
}

function containersOf(objects: Obj[]): Obj[] {
  return objects.flatMap((o) => {
    const pod =
      (((o['spec'] as Obj | undefined)?.['template'] as Obj | undefined)?.['spec'] as
        Obj | undefined) ?? {};
    return [
      ...((pod['containers'] as Obj[] | undefined) ?? []),
      ...((pod['initContainers'] as Obj[] | undefined) ?? []),
    ];
  });
}

/** Strategic merge as kubectl does it for the fields used here: maps merge, keyed lists merge by key, other lists are replaced, `$patch: delete` removes. */
function strategicMerge(base: unknown, patch: unknown, field = ''): unknown {
  if (isObj(base) && isObj(patch)) {
    const out: Obj = { ...base };
    for (const [key, value] of Object.entries(patch)) {
      if (value === null) delete out[key];
      else out[key] = key in base ? strategicMerge(base[key], value, key) : stripDirectives(value);
    }
    return out;
  }
  if (Array.isArray(base) && Array.isArray(patch) && MERGE_KEYS[field] !== undefined) {
    const key = MERGE_KEYS[field]!;
    const out = [...base];
    for (const item of patch as Obj[]) {
      const i = out.findIndex((b) => isObj(b) && b[key] === item[key]);
      if (item['$patch'] === 'delete') {
        if (i !== -1) out.splice(i, 1);
      } else if (i === -1) out.push(stripDirectives(item));
      else out[i] = strategicMerge(out[i], item, field);
    }
    return out;
  }
  return stripDirectives(patch);
}

function stripDirectives(v: unknown): unknown {
  if (Array.isArray(v))
    return v.filter((x) => !(isObj(x) && x['$patch'] === 'delete')).map(stripDirectives);
  if (isObj(v))
    return Object.fromEntries(
      Object.entries(v)
        .filter(([k]) => k !== '$patch')
        .map(([k, x]) => [k, stripDirectives(x)]),
    );
  return v;
}
