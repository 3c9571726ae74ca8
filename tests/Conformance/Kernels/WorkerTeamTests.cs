using Higher.Reference;

namespace Higher.Conformance.Kernels;

/// <summary>
/// The Reference backend's fork-join team (<see cref="WorkerTeam"/>, behind <c>Parallelism.For</c>): every index
/// runs exactly once, on more than one thread, over many loops in a row (the workers' spin and sleep both taken);
/// a loop inside a body runs sequentially on its thread; two threads forking at once both finish (one on the thread
/// pool); a body's exception reaches the caller after the loop, and the team keeps working.
/// </summary>
public sealed class WorkerTeamTests
{
    [Fact]
    public void EveryIndexRunsOnce_OverManyLoops_OnSeveralThreads()
    {
        var threads = new Parallelism(3);
        var seen = new HashSet<int>();
        for (int loop = 0; loop < 2000; loop++)
        {
            int n = 1 + loop % 37;
            var counts = new int[n];
            threads.For(0, n, i =>
            {
                Interlocked.Increment(ref counts[i]);
                if (loop % 50 == 0)
                {
                    Thread.SpinWait(20000);
                }
                lock (seen)
                {
                    seen.Add(Environment.CurrentManagedThreadId);
                }
            });
            Assert.All(counts, c => Assert.Equal(1, c));
            if (loop % 400 == 0)
            {
                // Long enough for the workers to stop spinning and sleep: the next loop must wake them.
                Thread.Sleep(30);
            }
        }
        Assert.True(seen.Count >= 2, $"the loops ran on {seen.Count} thread(s)");
    }

    [Fact]
    public void RangeWithOffset_RunsExactlyItsIndices()
    {
        var threads = new Parallelism(2);
        var counts = new int[20];
        threads.For(5, 17, i => Interlocked.Increment(ref counts[i]));
        for (int i = 0; i < counts.Length; i++)
        {
            Assert.Equal(i is >= 5 and < 17 ? 1 : 0, counts[i]);
        }
    }

    [Fact]
    public void LoopInsideABody_RunsSequentiallyOnThatThread()
    {
        var threads = new Parallelism(2);
        var counts = new int[8 * 8];
        threads.For(0, 8, i =>
        {
            int outer = Environment.CurrentManagedThreadId;
            threads.For(0, 8, j =>
            {
                Assert.Equal(outer, Environment.CurrentManagedThreadId);
                Interlocked.Increment(ref counts[i * 8 + j]);
            });
        });
        Assert.All(counts, c => Assert.Equal(1, c));
    }

    [Fact]
    public void TwoCallersAtOnce_BothFinishEveryIndex()
    {
        var threads = new Parallelism(2);
        var totals = new long[2];
        var callers = Enumerable.Range(0, 2).Select(c => new Thread(() =>
        {
            for (int loop = 0; loop < 500; loop++)
            {
                long sum = 0;
                threads.For(0, 16, i => Interlocked.Add(ref sum, i + 1));
                Interlocked.Add(ref totals[c], sum);
            }
        })).ToArray();
        foreach (var t in callers)
        {
            t.Start();
        }
        foreach (var t in callers)
        {
            t.Join();
        }
        Assert.Equal(new long[] { 500 * 136, 500 * 136 }, totals);
    }

    [Fact]
    public void BodyException_ReachesTheCaller_AfterEveryOtherIndex_AndTheTeamKeepsWorking()
    {
        var threads = new Parallelism(2);
        var counts = new int[10];
        var error = Assert.Throws<AggregateException>(() => threads.For(0, 10, i =>
        {
            Interlocked.Increment(ref counts[i]);
            if (i == 3)
            {
                throw new InvalidOperationException("index 3");
            }
        }));
        Assert.Equal("index 3", Assert.IsType<InvalidOperationException>(Assert.Single(error.InnerExceptions)).Message);
        Assert.All(counts, c => Assert.Equal(1, c));
        int ran = 0;
        threads.For(0, 10, _ => Interlocked.Increment(ref ran));
        Assert.Equal(10, ran);
    }
}
