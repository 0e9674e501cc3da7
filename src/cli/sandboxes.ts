/**
 * `cnm sandbox ls|create|inspect|rm`.
 *
 * @module
 */

import { pairs } from "./_args.ts";
import { expectArgs, short, type Verb } from "./_context.ts";
import {
  currentState,
  inspect,
  LABEL,
  listing,
  LS_FLAGS,
  printed,
  removeAll,
  RM_FORCE,
  withApi,
} from "./objects.ts";

/** `cnm sandbox …` */
export const sandbox: Record<string, Verb> = {
  ls: {
    usage: "cnm sandbox ls [-q] [--all] [--filter KEY=VALUE]...",
    summary: "Lists sandboxes (read from the stream; no controller needed).",
    flags: LS_FLAGS,
    async run(ctx) {
      expectArgs(ctx, 0, 0, "no arguments");
      const { sandboxes } = await currentState(ctx, ["sandbox"]);
      listing(
        ctx,
        sandboxes,
        ["SANDBOX ID", "NAME", "STATE", "ENDPOINTS", "KEY", "HOST"],
        (s) => [short(s.id), s.name, s.state, s.endpointIds.length, s.key, s.host],
      );
    },
  },
  create: {
    usage: "cnm sandbox create [OPTIONS] NAME",
    summary: "Creates a sandbox (a network namespace) on the host's controller.",
    flags: {
      key: {
        type: "string",
        arg: "PATH",
        help: "use this existing namespace instead of creating one",
      },
      hostname: { type: "string", arg: "NAME", help: "hostname for /etc/hosts" },
      dns: { type: "string", multi: true, arg: "IP", help: "resolver" },
      "dns-search": { type: "string", multi: true, arg: "DOMAIN", help: "search domain" },
      "add-host": { type: "string", multi: true, arg: "HOST:IP", help: "extra /etc/hosts entry" },
      ...LABEL,
    },
    async run(ctx) {
      const [name] = expectArgs(ctx, 1, 1, "a sandbox name");
      const f = ctx.flags;
      const options = {
        name,
        labels: pairs(f.label as string[], "label"),
        ...(f.key ? { key: f.key as string } : {}),
        ...(f.hostname ? { hostname: f.hostname as string } : {}),
        ...(f.dns ? { dns: f.dns as string[] } : {}),
        ...(f["dns-search"] ? { dnsSearch: f["dns-search"] as string[] } : {}),
        ...(f["add-host"] ? { extraHosts: f["add-host"] as string[] } : {}),
      };
      printed(ctx, await withApi(ctx, (api) => api.createSandbox(options)));
    },
  },
  inspect: inspect("sandboxes", "sandbox"),
  rm: {
    usage: "cnm sandbox rm [-f] SANDBOX...",
    summary: "Deletes sandboxes (leaving and deleting their endpoints first).",
    flags: RM_FORCE,
    async run(ctx) {
      const refs = expectArgs(ctx, 1, Infinity, "one or more sandboxes");
      await removeAll(ctx, refs, (api, r) => api.deleteSandbox(r));
    },
  },
};
