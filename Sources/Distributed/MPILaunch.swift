import Foundation

/// What can be known about an MPI launch before MPI_Init, from the launcher's
/// environment (Open MPI's mpirun, PMIx, MPICH's PMI, Slurm's srun).
public enum MPILaunch {
    /// This process's rank as the launcher set it (nil outside a launcher).
    public static var rank: String? {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_RANK"] ?? env["PMIX_RANK"] ?? env["PMI_RANK"] ?? env["SLURM_PROCID"]
    }

    /// Rank 0, or a process started without a launcher.
    public static var isRankZero: Bool { (rank ?? "0") == "0" }

    /// Started by mpirun or srun (which hand ranks a pseudo-terminal even when
    /// their own output goes to a file).
    public static var isLaunched: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["SLURM_PROCID"] != nil
    }
}
