// Linked into the bench jobs (ConvMaml, SmallOp, BatchedMaml): running a child process (this job in
// another configuration, or a PyTorch twin) and reading the machine's load.

using System.Diagnostics;

namespace Higher.Bench;

/// <summary>What the bench jobs share to run their children and to report the load beside their figures.</summary>
internal static class BenchProcess
{
    /// <summary>
    /// Runs <paramref name="file"/> with <paramref name="arguments"/> (through the dotnet host when
    /// <paramref name="file"/> is it, this app's own dll first) and returns its standard output; null,
    /// after printing its exit code and standard error naming <paramref name="what"/>, when it fails.
    /// Standard error is drained while standard output is read, so a chatty child cannot block.
    /// </summary>
    public static string? Run(string file, string arguments, string what, params (string Name, string Value)[] environment)
    {
        var psi = new ProcessStartInfo(file, arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in environment)
        {
            psi.Environment[name] = value;
        }
        if (file.EndsWith("dotnet", StringComparison.Ordinal))
        {
            psi.Arguments = $"{Environment.GetCommandLineArgs()[0]} {arguments}";
        }
        using var p = Process.Start(psi)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        if (p.ExitCode != 0 || stdout.Trim().Length == 0)
        {
            Console.Error.WriteLine($"{what} failed (exit {p.ExitCode}): {stderr.Result}");
            return null;
        }
        return stdout;
    }

    /// <summary>The last non-empty line of <paramref name="output"/> (where a child prints its JSON result).</summary>
    public static string LastLine(string output) => output.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];

    /// <summary>The 1, 5 and 15 minute load averages of /proc/loadavg, or "unknown".</summary>
    public static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "unknown";
        }
    }
}
