// Linked into the bench jobs that time phases on the calling thread (SmallOp, BatchedMaml).

namespace Higher.Bench;

/// <summary>CPU time of the calling thread (clock_gettime(CLOCK_THREAD_CPUTIME_ID)): on a shared machine it excludes the time spent waiting for a core.</summary>
internal static partial class ThreadCpu
{
    private const int ClockThreadCpuTime = 3;

    [System.Runtime.InteropServices.StructLayout(System.Runtime.InteropServices.LayoutKind.Sequential)]
    private struct TimeSpec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out TimeSpec time);

    /// <summary>Milliseconds of CPU this thread has used (0 where the clock is unavailable).</summary>
    public static double Ms()
    {
        try
        {
            return ClockGetTime(ClockThreadCpuTime, out var t) == 0 ? t.Seconds * 1e3 + t.Nanoseconds * 1e-6 : 0;
        }
        catch (DllNotFoundException)
        {
            return 0;
        }
    }
}
