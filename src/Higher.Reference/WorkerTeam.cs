namespace Higher.Reference;

/// <summary>
/// A fork-join team of degree − 1 persistent worker threads plus the calling thread, for the kernels' short
/// parallel loops (a task of the conv net runs a few hundred, most under a millisecond). <c>Parallel.For</c>
/// queues its pieces to the thread pool, whose threads sleep a few microseconds after their last item, so
/// every call paid a wake-up and the caller often ran most pieces alone. The team's workers spin a short
/// while after each loop before they sleep (<see cref="SpinTicks"/>), and the caller takes pieces too, so a loop
/// that follows another within that time starts on every thread at once.
/// <para>
/// Which thread runs which index is not fixed (each claims the next few), which is why every kernel that
/// forks splits its work by the geometry only: the bits never depend on the schedule. One loop at a time:
/// a second thread that finds the team busy gets <see cref="TryRun"/> false (and the caller falls back to the
/// thread pool); a loop started inside a body runs sequentially on that thread (<see cref="InsideBody"/>).
/// Teams are shared by every backend of the same degree and live as long as the process (background
/// threads, asleep when idle).
/// </para>
/// </summary>
internal sealed class WorkerTeam
{
    /// <summary>
    /// How long a worker spins for the next loop before it sleeps: 200 µs. The conv MAML task read the same with 20,
    /// 200 and 1,500 µs (bench/RESULTS.md, session 10); the shorter spin leaves the core to the GC and JIT threads sooner.
    /// </summary>
    private static readonly long SpinTicks = System.Diagnostics.Stopwatch.Frequency / 5_000;

    private static readonly object TeamsGate = new();
    private static WorkerTeam?[] _teams = new WorkerTeam?[8];

    [ThreadStatic]
    private static bool _insideBody;

    private readonly object _gate = new();
    private readonly Worker[] _workers;
    private Job? _job;

    private WorkerTeam(int degree)
    {
        _workers = new Worker[degree - 1];
        for (int i = 0; i < _workers.Length; i++)
        {
            var worker = new Worker();
            _workers[i] = worker;
            var thread = new Thread(() => Work(worker)) { IsBackground = true, Name = $"Higher.Reference worker {i + 1}/{degree - 1}" };
            thread.Start();
        }
    }

    /// <summary>True on a thread that is running a body of some team's loop (a worker, or a caller inside its own loop).</summary>
    public static bool InsideBody => _insideBody;

    /// <summary>The team of this degree (2 or more), made on first use.</summary>
    public static WorkerTeam Shared(int degree)
    {
        lock (TeamsGate)
        {
            if (degree >= _teams.Length)
            {
                Array.Resize(ref _teams, degree + 1);
            }
            return _teams[degree] ??= new WorkerTeam(degree);
        }
    }

    /// <summary>
    /// Runs body(i) for every i in [from, to) on the team and the calling thread and returns when all are done;
    /// false (nothing run) when another thread's loop holds the team. A body's exception is rethrown after every
    /// index has finished, wrapped as <c>Parallel.For</c> does.
    /// </summary>
    public bool TryRun(int from, int to, Action<int> body)
    {
        if (!Monitor.TryEnter(_gate))
        {
            return false;
        }
        try
        {
            var job = new Job(body, from, to, _workers.Length + 1);
            // A full fence (not a release store) before reading the workers' sleeping flags, as each worker fences
            // between raising its flag and reading _job: otherwise both could read the other's old value, and a
            // worker would sleep through this loop (harmless, as the caller runs every index, but one thread short).
            Interlocked.Exchange(ref _job, job);
            foreach (var worker in _workers)
            {
                worker.Wake();
            }
            job.RunPieces();
            var spin = new SpinWait();
            while (Volatile.Read(ref job.Done) < job.Count)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }
            if (job.Errors is { } errors)
            {
                throw new AggregateException(errors);
            }
            return true;
        }
        finally
        {
            Monitor.Exit(_gate);
        }
    }

    private void Work(Worker worker)
    {
        _insideBody = true;
        Job? last = null;
        while (true)
        {
            var job = Volatile.Read(ref _job);
            if (job is null || ReferenceEquals(job, last))
            {
                job = worker.WaitForJob(this, last);
            }
            last = job;
            job.RunPieces();
        }
    }

    /// <summary>One loop: its body and range, the next index to claim and the number finished.</summary>
    private sealed class Job(Action<int> body, int from, int to, int threads)
    {
        public readonly int Count = to - from;

        /// <summary>
        /// Indices per claim: a quarter of an even share (64 channels on two threads are claimed 8 at a time), so a
        /// thread the machine delays leaves its share to the others while a loop of short bodies does not pay two
        /// contended atomic adds per index (10 % of a batch-norm call over 64 channels of 121 pixels).
        /// </summary>
        private readonly int _grain = Math.Max(1, (to - from) / (4 * threads));

        public int Next = from;
        public int Done;
        public List<Exception>? Errors;

        /// <summary>Claims and runs indices until none is left.</summary>
        public void RunPieces()
        {
            bool wasInside = _insideBody;
            _insideBody = true;
            try
            {
                int start;
                while ((start = Interlocked.Add(ref Next, _grain) - _grain) < to)
                {
                    int end = Math.Min(to, start + _grain);
                    for (int i = start; i < end; i++)
                    {
                        try
                        {
                            body(i);
                        }
                        catch (Exception e)
                        {
                            lock (this)
                            {
                                (Errors ??= []).Add(e);
                            }
                        }
                    }
                    Interlocked.Add(ref Done, end - start);
                }
            }
            finally
            {
                _insideBody = wasInside;
            }
        }
    }

    /// <summary>A worker's sleep: spin for a new job, then block until the caller wakes it.</summary>
    private sealed class Worker
    {
        private readonly object _lock = new();
        private bool _signaled;
        private int _sleeping;

        private void Block()
        {
            lock (_lock)
            {
                while (!_signaled)
                {
                    Monitor.Wait(_lock);
                }
                _signaled = false;
            }
        }

        public Job WaitForJob(WorkerTeam team, Job? last)
        {
            while (true)
            {
                long start = System.Diagnostics.Stopwatch.GetTimestamp();
                while (System.Diagnostics.Stopwatch.GetTimestamp() - start < SpinTicks)
                {
                    var job = Volatile.Read(ref team._job);
                    if (job is not null && !ReferenceEquals(job, last))
                    {
                        return job;
                    }
                    Thread.SpinWait(1);
                }
                Interlocked.Exchange(ref _sleeping, 1);
                var next = Volatile.Read(ref team._job);
                if (next is not null && !ReferenceEquals(next, last))
                {
                    if (Interlocked.Exchange(ref _sleeping, 0) == 0)
                    {
                        // The caller saw the flag and signalled: take that signal.
                        Block();
                    }
                    return next;
                }
                Block();
            }
        }

        /// <summary>Called after a job is published: releases the worker if it went to sleep.</summary>
        public void Wake()
        {
            if (Volatile.Read(ref _sleeping) == 1 && Interlocked.Exchange(ref _sleeping, 0) == 1)
            {
                lock (_lock)
                {
                    _signaled = true;
                    Monitor.Pulse(_lock);
                }
            }
        }
    }
}
