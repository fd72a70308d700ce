/**
 * A stand-in server process for the supervisor's tests: before listening it notes whether the
 * port it was given could still be bound by anyone else, then listens there with `reusePort`,
 * answers "worker" to every request and reports to the supervisor as a real one does. What it
 * found goes to `<folder>/worker-<index>`, the folder its first argument; a second argument
 * makes it wait that many ms before it listens, as a slow start would.
 *
 * @module
 */
import { ClusterMember, workerReport } from "../../src/cluster/control.ts";

const port = Number(Deno.env.get("PORT"));
const member = ClusterMember.fromEnv(Deno.env);
if (!member) throw new Error("not started by a supervisor");

let portWas: "held" | "free";
try {
  Deno.listen({ hostname: "127.0.0.1", port }).close();
  portWas = "free";
} catch (error) {
  if (!(error instanceof Deno.errors.AddrInUse)) throw error;
  portWas = "held";
}
await Deno.writeTextFile(`${Deno.args[0]}/worker-${member.worker}`, portWas);

await new Promise((resolve) => setTimeout(resolve, Number(Deno.args[1] ?? 0)));
Deno.serve(
  { hostname: "127.0.0.1", port, reusePort: true, onListen: () => {} },
  () => new Response("worker"),
);
await member.report(workerReport(member.worker, { active: 0, pending: 0 }, false));
