using System.Globalization;
using Higher.DistributedRunner;
using Higher.Nn;
using Higher.Samples.MamlSinusoid;

namespace Higher.Distributed.Tests;

/// <summary>
/// The sample's MAML sinusoid meta-training (float64, meta-batch 5, 10 meta-steps of Adam), data-parallel
/// under mpirun against the same code in this one process. 5 tasks over 2 ranks is 3 + 2, over 3 ranks
/// 2 + 2 + 1: uneven splits. The oracle is the single-process meta-gradient over the whole meta-batch
/// (this process runs every task, no MPI involved).
/// </summary>
public sealed class DataParallelMamlTests
{
    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void MetaGradient_MatchesOneProcess_AndRanksStayBitIdentical(int ranks)
    {
        if (MpiJob.SkipReason is { } reason)
        {
            Assert.Skip(reason);
        }
        var config = RunnerConfig.Maml;
        var single = new OneProcess();
        var singleModel = Maml.MetaTrain(config, share: single);
        var expectedGrads = single.FirstGrads.ToDictionary(g => g.Name, g => g.Grad);
        var expectedParams = singleModel.NamedParameters().ToDictionary(p => p.Name, p => p.Value.ToDoubleArray());

        var output = MpiJob.Run("maml", ranks);

        // The split: contiguous blocks covering the meta-batch in rank order, sizes differing by at most one.
        int next = 0;
        for (int r = 0; r < ranks; r++)
        {
            var parts = output[r].Single(l => l.StartsWith("tasks ", StringComparison.Ordinal)).Split(' ');
            int start = int.Parse(parts[1], CultureInfo.InvariantCulture), count = int.Parse(parts[2], CultureInfo.InvariantCulture);
            Assert.Equal(next, start);
            Assert.InRange(count, config.MetaBatch / ranks, (config.MetaBatch / ranks) + 1);
            next += count;
        }
        Assert.Equal(config.MetaBatch, next);

        // Step 0's meta-gradient on every rank, after the allreduce, against the whole meta-batch in one process.
        double worstGrad = 0;
        for (int r = 0; r < ranks; r++)
        {
            var grads = Read(output[r], "grad");
            Assert.Equal(expectedGrads.Keys.Order(), grads.Keys.Order());
            foreach (var (name, expected) in expectedGrads)
            {
                var got = grads[name];
                Assert.Equal(expected.Length, got.Length);
                for (int i = 0; i < expected.Length; i++)
                {
                    double error = Math.Abs(got[i] - expected[i]);
                    worstGrad = Math.Max(worstGrad, error);
                    Assert.True(error <= 1e-12, $"rank {r} of {ranks}: meta-gradient {name}[{i}] = {got[i]:R}, one process {expected[i]:R} (|diff| {error:E2} > 1e-12)");
                }
            }
        }
        Assert.True(expectedGrads.Values.Sum(g => g.Sum(Math.Abs)) > 1e-3, "the meta-gradient is not trivially zero");

        // After 10 meta-steps: every rank's parameters are the same bits as rank 0's, and match the one-process run.
        var rank0 = output[0].Where(l => l.StartsWith("param ", StringComparison.Ordinal)).ToArray();
        Assert.Equal(expectedParams.Count, rank0.Length);
        for (int r = 1; r < ranks; r++)
        {
            Assert.Equal(rank0, output[r].Where(l => l.StartsWith("param ", StringComparison.Ordinal)).ToArray());
        }
        double worstParam = 0;
        foreach (var (name, got) in Read(output[0], "param"))
        {
            var expected = expectedParams[name];
            for (int i = 0; i < expected.Length; i++)
            {
                worstParam = Math.Max(worstParam, Math.Abs(got[i] - expected[i]));
                Assert.True(Math.Abs(got[i] - expected[i]) <= 1e-12, $"after 10 meta-steps, {name}[{i}] = {got[i]:R} on the ranks, {expected[i]:R} in one process");
            }
        }
        // The parameters moved: the 10 steps were taken (Adam lr 1e-3 moves each weight by up to about 1e-2).
        var initial = new Mlp([1, 40, 40, 1], new Generator(config.Seed), DType.Float64).NamedParameters().ToDictionary(p => p.Name, p => p.Value.ToDoubleArray());
        Assert.True(expectedParams.Sum(p => p.Value.Zip(initial[p.Key], (a, b) => Math.Abs(a - b)).Max()) > 1e-3);
        TestContext.Current.TestOutputHelper?.WriteLine($"{ranks} ranks: worst |meta-gradient - one process| = {worstGrad:E2}, worst |parameter - one process| after 10 steps = {worstParam:E2}");
    }

    private static Dictionary<string, double[]> Read(string[] lines, string kind) => lines
        .Where(l => l.StartsWith(kind + " ", StringComparison.Ordinal))
        .Select(l => l.Split(' '))
        .ToDictionary(p => p[1], p => p.Skip(2).Select(h => BitConverter.Int64BitsToDouble(long.Parse(h, NumberStyles.HexNumber, CultureInfo.InvariantCulture))).ToArray());

    /// <summary>The single process: every task here, no reduction; records step 0's meta-gradient.</summary>
    private sealed class OneProcess : IMetaBatchShare
    {
        public List<(string Name, double[] Grad)> FirstGrads { get; } = [];

        public void Start(Module model)
        {
        }

        public (int Start, int Count) Tasks(int metaBatch) => (0, metaBatch);

        public double Reduce(Module model, int iteration, double localLoss)
        {
            if (iteration == 0)
            {
                foreach (var (name, p) in model.NamedParameterHandles())
                {
                    FirstGrads.Add((name, p.Grad!.ToDoubleArray()));
                }
            }
            return localLoss;
        }
    }
}
