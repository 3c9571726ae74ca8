namespace Higher.Reference;

/// <summary>
/// How many threads a kernel may use. Kernels only split work into pieces whose results do not
/// depend on who computes them, so the degree changes speed, never bits.
/// </summary>
internal sealed class Parallelism
{
    private readonly ParallelOptions _options;

    public Parallelism(int maxDegree)
    {
        MaxDegree = maxDegree;
        _options = new ParallelOptions { MaxDegreeOfParallelism = maxDegree };
    }

    /// <summary>Upper bound on threads; 1 runs everything on the calling thread.</summary>
    public int MaxDegree { get; }

    /// <summary>True when more than one thread may run.</summary>
    public bool Enabled => MaxDegree > 1;

    /// <summary>Runs body(i) for i in [from, to): sequentially in order when disabled, else on the thread pool.</summary>
    public void For(int from, int to, Action<int> body)
    {
        if (!Enabled || to - from <= 1)
        {
            for (int i = from; i < to; i++)
            {
                body(i);
            }
            return;
        }
        Parallel.For(from, to, _options, body);
    }

    /// <summary>Runs two actions, concurrently when enabled.</summary>
    public void Invoke(Action first, Action second)
    {
        if (!Enabled)
        {
            first();
            second();
            return;
        }
        Parallel.Invoke(_options, first, second);
    }
}
