import * as protobuf from 'protobufjs';
import * as path from 'node:path';
import type { CheckInput } from './check-input';
import { decodeCheckRequest } from './codec';
import { PROTO_ROOT } from './proto-root';

let root: protobuf.Root | undefined;

function checkRequestType(): protobuf.Type {
  if (!root) {
    root = new protobuf.Root();
    root.resolvePath = (_origin, target) =>
      path.isAbsolute(target) ? target : path.join(PROTO_ROOT, target);
    root.loadSync('envoy/service/auth/v3/external_auth.proto', { keepCase: false });
    root.resolveAll();
  }
  return root.lookupType('envoy.service.auth.v3.CheckRequest');
}

/**
 * Reads a CheckRequest in the proto3 JSON mapping (lowerCamelCase or original field names,
 * RFC 3339 timestamps, plain-JSON Structs) and returns it exactly as the gRPC server would
 * have decoded it: the JSON is encoded to wire bytes and decoded by the server's own decoder.
 * An unknown field name is an error naming its path, as protobuf's JSON parsers do unless told
 * to ignore them: a misspelt `princpal` would otherwise be a request without a caller.
 */
export function checkRequestFromJson(json: unknown): CheckInput {
  const type = checkRequestType();
  const message = type.fromObject(toProtobufJsObject(type, json, 'CheckRequest'));
  return decodeCheckRequest(type.encode(message).finish());
}

function toProtobufJsObject(
  type: protobuf.Type,
  json: unknown,
  where: string,
): Record<string, unknown> {
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    throw new Error(`${where} must be a JSON object`);
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(json as Record<string, unknown>)) {
    // Own properties only: `constructor` or `__proto__` must not reach protobufjs as a field.
    const field = Object.hasOwn(type.fields, key)
      ? type.fields[key]
      : Object.hasOwn(type.fields, camel(key))
        ? type.fields[camel(key)]
        : undefined;
    if (field === undefined)
      throw new Error(
        `${where}.${key.slice(0, 64)} is not a field of ${messageName(type)} (it has: ${Object.keys(type.fields).join(', ')})`,
      );
    if (value === null) continue;
    field.resolve();
    out[field.name] = convertField(field, value, `${where}.${key}`);
  }
  return out;
}

function convertField(field: protobuf.Field, value: unknown, where: string): unknown {
  const target = field.resolvedType;
  if (!(target instanceof protobuf.Type)) return value;
  const one = (v: unknown, w: string): unknown => convertMessage(target, v, w);
  if (field instanceof protobuf.MapField) {
    if (value === null || typeof value !== 'object')
      throw new Error(`${where} must be a JSON object`);
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [
        k,
        one(v, `${where}.${k}`),
      ]),
    );
  }
  if (field.repeated) {
    if (!Array.isArray(value)) throw new Error(`${where} must be a JSON array`);
    return value.map((v, i) => one(v, `${where}[${i}]`));
  }
  return one(value, where);
}

function convertMessage(type: protobuf.Type, value: unknown, where: string): unknown {
  switch (type.fullName) {
    case '.google.protobuf.Timestamp': {
      if (typeof value !== 'string') return value;
      const ms = Date.parse(value);
      if (Number.isNaN(ms)) throw new Error(`${where} is not an RFC 3339 timestamp`);
      return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
    }
    case '.google.protobuf.Struct':
      return toStruct(value, where);
    default:
      return toProtobufJsObject(type, value, where);
  }
}

function toStruct(value: unknown, where: string): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw new Error(`${where} must be a JSON object`);
  return { fields: Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toValue(v)])) };
}

function toValue(v: unknown): unknown {
  if (v === null) return { nullValue: 0 };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v, '') };
}

/** `AttributeContext.Peer`: the nested message name without its package. */
function messageName(type: protobuf.Type): string {
  const parts = [type.name];
  for (let parent = type.parent; parent instanceof protobuf.Type; parent = parent.parent)
    parts.unshift(parent.name);
  return parts.join('.');
}

function camel(name: string): string {
  return name.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}
