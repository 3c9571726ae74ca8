namespace Higher;

/// <summary>
/// A seeded stream of counter-based (Philox4x32-10) random numbers. Each draw reserves a range of
/// counters, so the same seed gives the same numbers on every backend and thread count.
/// Reserving is thread-safe.
/// </summary>
public sealed class Generator
{
    private long _offset;

    /// <summary>Creates a generator with <paramref name="seed"/>, starting at counter 0.</summary>
    public Generator(ulong seed) => Seed = seed;

    /// <summary>The process-wide default generator (seed 0 until <see cref="ManualSeed"/>).</summary>
    public static Generator Default { get; private set; } = new(0);

    /// <summary>Replaces the default generator with a fresh one seeded with <paramref name="seed"/>.</summary>
    public static void ManualSeed(ulong seed) => Default = new Generator(seed);

    /// <summary>The key of the generator.</summary>
    public ulong Seed { get; }

    /// <summary>The next unused counter.</summary>
    public ulong Offset => (ulong)Interlocked.Read(ref _offset);

    /// <summary>Reserves <paramref name="count"/> counters and returns the first.</summary>
    public ulong Reserve(long count) => (ulong)(Interlocked.Add(ref _offset, count) - count);

    /// <summary>Moves the counter back (or on) to <paramref name="offset"/>: a checkpointed unroll replays a segment's random draws so.</summary>
    internal void Rewind(ulong offset) => Interlocked.Exchange(ref _offset, (long)offset);

    /// <summary>A uniform integer in [0, n) drawn from the next counter (for host-side shuffles and sampling).</summary>
    public int NextInt(int n)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(n);
        return (int)Math.Min(n - 1, Math.Floor(Philox.Uniform(Seed, Reserve(1)) * n));
    }

    /// <summary>A uniform double in [0, 1) drawn from the next counter.</summary>
    public double NextDouble() => Philox.Uniform(Seed, Reserve(1));
}
