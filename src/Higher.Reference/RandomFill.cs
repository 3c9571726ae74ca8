using System.Runtime.CompilerServices;

namespace Higher.Reference;

/// <summary>Counter-based draws: element i depends only on (seed, offset + i), so any split of the range gives the same numbers.</summary>
internal static class RandomFill
{
    private const int ParallelThreshold = 1 << 16;
    private const int Chunk = 1 << 14;

    public static void Fill<T>(Parallelism threads, Span<T> destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b)
        where T : unmanaged
    {
        int n = destination.Length;
        if (n >= ParallelThreshold && threads.Enabled)
        {
            unsafe
            {
                fixed (T* p = destination)
                {
                    nint address = (nint)p;
                    threads.For(0, (n + Chunk - 1) / Chunk, c =>
                    {
                        int start = c * Chunk;
                        int length = Math.Min(Chunk, n - start);
                        FillRange(new Span<T>((T*)address + start, length), distribution, seed, offset + (ulong)start, a, b);
                    });
                }
            }
            return;
        }
        FillRange(destination, distribution, seed, offset, a, b);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void FillRange<T>(Span<T> destination, RandomDistribution distribution, ulong seed, ulong offset, double a, double b)
        where T : unmanaged
    {
        // Every draw is computed in double and rounded once to the storage type; a uniform draw that
        // rounding carried up to `high` becomes the largest value below it, so draws stay in [low, high).
        bool uniform = distribution == RandomDistribution.Uniform;
        bool clampHigh = uniform && b > a;
        for (int i = 0; i < destination.Length; i++)
        {
            ulong counter = offset + (ulong)i;
            double v = uniform
                ? a + (b - a) * Philox.Uniform(seed, counter)
                : a + b * Philox.Normal(seed, counter);
            if (typeof(T) == typeof(float))
            {
                float f = (float)v;
                if (clampHigh && f >= (float)b)
                {
                    f = MathF.BitDecrement((float)b);
                }
                destination[i] = (T)(object)f;
            }
            else
            {
                if (clampHigh && v >= b)
                {
                    v = Math.BitDecrement(b);
                }
                destination[i] = (T)(object)v;
            }
        }
    }
}
