using System.Diagnostics;
using System.Reflection;

namespace Higher.Distributed.Tests;

/// <summary>
/// Starts tests/DistributedRunner under <c>mpirun -np N</c> on this machine (loopback, oversubscribed,
/// allowed as root as CI runs) and reads back what each rank wrote. <see cref="SkipReason"/> says why
/// no job can run here (no mpirun, no Open MPI library); the tests then report skipped with it.
/// </summary>
internal static class MpiJob
{
    /// <summary>The runner's DLL, as the build recorded it (declared first: SkipReason's initializer does not read it, but Run does).</summary>
    public static string RunnerPath { get; } = typeof(MpiJob).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "DistributedRunner").Value!;

    /// <summary>Why MPI jobs cannot run on this machine, or null.</summary>
    public static string? SkipReason { get; } = FindSkipReason();

    private static string? FindSkipReason()
    {
        if (FindOnPath("mpirun") is null)
        {
            return "mpirun is not on PATH: install Open MPI (apt-get install openmpi-bin libopenmpi-dev; setup.sh does it when run as root).";
        }
        if (!Communicator.IsAvailable(out string reason))
        {
            return reason;
        }
        return null;
    }

    /// <summary>Runs <paramref name="scenario"/> on <paramref name="ranks"/> ranks; returns each rank's lines, rank by rank.</summary>
    public static string[][] Run(string scenario, int ranks)
    {
        // A missing runner is a build defect, not a reason to skip.
        Assert.True(File.Exists(RunnerPath), $"The runner {RunnerPath} was not built (building tests/Distributed builds it).");
        string outDir = Directory.CreateTempSubdirectory("higher-mpi-").FullName;
        try
        {
            var start = new ProcessStartInfo("mpirun")
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
                UseShellExecute = false,
            };
            foreach (string a in new[]
            {
                "-np", ranks.ToString(System.Globalization.CultureInfo.InvariantCulture), "--oversubscribe", "--allow-run-as-root",
                // Containers often forbid the cross-memory-attach single copy of the shared-memory transport.
                "--mca", "btl_vader_single_copy_mechanism", "none",
                "dotnet", RunnerPath, scenario, outDir,
            })
            {
                start.ArgumentList.Add(a);
            }
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync();
            var stderr = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromMinutes(3)))
            {
                process.Kill(entireProcessTree: true);
                Assert.Fail($"mpirun -np {ranks} {scenario} did not finish within 3 minutes.\n{stdout.Result}\n{stderr.Result}");
            }
            process.WaitForExit();
            Assert.True(process.ExitCode == 0, $"mpirun -np {ranks} {scenario} exited with {process.ExitCode}.\nstdout:\n{stdout.Result}\nstderr:\n{stderr.Result}");
            var result = new string[ranks][];
            for (int r = 0; r < ranks; r++)
            {
                string file = Path.Combine(outDir, $"rank{r}.txt");
                Assert.True(File.Exists(file), $"rank {r} wrote no {file}.\nstdout:\n{stdout.Result}\nstderr:\n{stderr.Result}");
                result[r] = File.ReadAllLines(file);
                Assert.Equal($"rank {r} size {ranks}", result[r][0]);
            }
            return result;
        }
        finally
        {
            Directory.Delete(outDir, recursive: true);
        }
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, name)).FirstOrDefault(File.Exists);
}
