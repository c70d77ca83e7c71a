import Foundation

/// This rank's share of its own node, known before MPI starts (from the
/// launcher's environment and the process's CPU affinity). Every command's
/// default thread count comes from here, so one rank per node on a cluster
/// gets the node, and several ranks on one node split it.
public enum NodeShare {
    /// Ranks on this node, from the launcher's environment (1 without one).
    public static var ranksOnThisNode: Int {
        let env = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"] {
            if let v = env[key].flatMap({ Int($0) }), v > 0 { return v }
        }
        return 1
    }

    /// The default compute threads: the cores this process may run on (its CPU
    /// affinity, e.g. one core under mpirun's default binding of 2 or fewer
    /// ranks), but at most the node's cores divided by the ranks on it, so ranks
    /// sharing a socket binding or no binding do not oversubscribe the node.
    public static var defaultComputeThreads: Int {
        let online = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        let allowed = allowedCPUs.map(\.count) ?? online
        return max(1, min(allowed, online / ranksOnThisNode))
    }

    /// The CPUs in this process's affinity mask (Linux: Cpus_allowed_list in
    /// /proc/self/status), nil where that is unknown.
    public static var allowedCPUs: [Int]? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
        else { return nil }
        return parseCPUList(String(line.dropFirst("Cpus_allowed_list:".count)))
    }

    /// "0-3,8,10-11" -> [0, 1, 2, 3, 8, 10, 11] (nil when malformed or empty).
    public static func parseCPUList(_ text: String) -> [Int]? {
        var cpus: [Int] = []
        for part in text.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: ",") {
            let bounds = part.trimmingCharacters(in: .whitespaces).split(separator: "-").map { Int($0) }
            guard !bounds.isEmpty, bounds.allSatisfy({ $0 != nil }) else { return nil }
            let lo = bounds[0]!, hi = bounds.count == 2 ? bounds[1]! : lo
            guard bounds.count <= 2, hi >= lo else { return nil }
            cpus += Array(lo...hi)
        }
        return cpus.isEmpty ? nil : cpus
    }

    /// One line for the start of a run: which CPUs this rank may use, and a
    /// warning when that is fewer than the threads it will run (they would take
    /// turns on the same cores, e.g. under Slurm's task/affinity without
    /// --cpus-per-task reaching srun).
    public static func affinityReport(rank: Int, host: String, threads: Int) -> (line: String, warning: String?) {
        guard let cpus = allowedCPUs else { return ("rank \(rank) on \(host): CPU affinity unknown", nil) }
        let list = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8))?
            .split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed_list:") })
            .map { $0.dropFirst("Cpus_allowed_list:".count).trimmingCharacters(in: .whitespaces) } ?? ""
        let line = "rank \(rank) on \(host): CPU affinity \(list) (\(cpus.count) CPU\(cpus.count == 1 ? "" : "s")), \(threads) compute thread(s)"
        guard cpus.count < threads else { return (line, nil) }
        return (line, "rank \(rank) on \(host) may run on \(cpus.count) CPU(s) (\(list)) but --threads is \(threads): its threads will take turns. Give each task its CPUs (srun --cpus-per-task / SRUN_CPUS_PER_TASK, mpirun --bind-to none or --map-by slot:PE=N) or lower --threads.")
    }
}
