namespace Higher.Reference;

/// <summary>
/// How many threads a kernel may use. Kernels only split work into pieces whose results do not
/// depend on who computes them, so the degree changes speed, never bits.
/// </summary>
internal sealed class Parallelism
{
    private readonly ParallelOptions _options;
    private readonly WorkerTeam? _team;

    public Parallelism(int maxDegree)
    {
        MaxDegree = maxDegree;
        _options = new ParallelOptions { MaxDegreeOfParallelism = maxDegree };
        _team = maxDegree > 1 ? WorkerTeam.Shared(maxDegree) : null;
    }

    /// <summary>Upper bound on threads; 1 runs everything on the calling thread.</summary>
    public int MaxDegree { get; }

    /// <summary>True when more than one thread may run.</summary>
    public bool Enabled => MaxDegree > 1;

    /// <summary>
    /// Runs body(i) for i in [from, to): sequentially in order when disabled or when called from inside another
    /// call's body, else on this degree's <see cref="WorkerTeam"/> (the thread pool while another thread has it).
    /// </summary>
    public void For(int from, int to, Action<int> body)
    {
        if (!Enabled || to - from <= 1 || WorkerTeam.InsideBody)
        {
            for (int i = from; i < to; i++)
            {
                body(i);
            }
            return;
        }
        if (_team!.TryRun(from, to, body))
        {
            return;
        }
        Parallel.For(from, to, _options, body);
    }

    /// <summary>Runs two actions, concurrently when enabled (sequentially inside another loop's body).</summary>
    public void Invoke(Action first, Action second)
    {
        if (!Enabled || WorkerTeam.InsideBody)
        {
            first();
            second();
            return;
        }
        For(0, 2, i => (i == 0 ? first : second)());
    }
}
