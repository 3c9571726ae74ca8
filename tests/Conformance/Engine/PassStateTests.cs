using Higher.Tape;

namespace Higher.Conformance.Engine;

/// <summary>
/// A backward pass keeps its per-node state (visited, leads to a target, the output's gradient so far)
/// in the nodes it claims, and falls back to maps when another running pass (nested in a backward,
/// or on another thread) holds a node of its graph. Either way the gradients are the same, no claim
/// outlives its pass, and a pass never reads or clears another pass's state.
/// </summary>
public sealed class PassStateTests
{
    // A MAML-like graph: one inner SGD step kept on the graph, then a query loss.
    private static (Tensor Loss, Tensor W, Tensor B) SecondOrderGraph()
    {
        var g = new Generator(11);
        var w = Tensor.Randn([4, 3], DType.Float64, g).WithRequiresGrad();
        var b = Tensor.Randn([4], DType.Float64, g).WithRequiresGrad();
        var x = Tensor.Randn([5, 3], DType.Float64, g);
        var y = Tensor.Randn([5, 4], DType.Float64, g);
        var inner = F.MseLoss(F.Relu(F.Linear(x, w, b)), y);
        var grads = Autograd.Grad([inner], [w, b], createGraph: true);
        var w1 = w - (0.1 * grads[0]!);
        var b1 = b - (0.1 * grads[1]!);
        var loss = F.MseLoss(F.Linear(x * 2, w1, b1).Tanh(), y);
        return (loss, w1, b1);
    }

    private static List<Node> Nodes(Tensor output)
    {
        var seen = new HashSet<Node>(ReferenceEqualityComparer.Instance);
        var stack = new Stack<Node>();
        stack.Push(output.GradFn!);
        seen.Add(output.GradFn!);
        while (stack.Count > 0)
        {
            foreach (var e in stack.Pop().Inputs)
            {
                if (e.Fn is { } fn && seen.Add(fn))
                {
                    stack.Push(fn);
                }
            }
        }
        return [.. seen];
    }

    private static double[][] Grads(Tensor loss, IReadOnlyList<Tensor> wrt) =>
        [.. Autograd.Grad([loss], wrt, retainGraph: true).Select(t => t!.ToDoubleArray())];

    [Fact]
    public void NoNodeStaysClaimed_AfterPassesWithAndWithoutTargets()
    {
        var (loss, w1, b1) = SecondOrderGraph();
        var nodes = Nodes(loss);
        Assert.True(nodes.Count > 15);
        _ = Autograd.Grad([loss], [w1, b1], retainGraph: true);
        Assert.All(nodes, n => Assert.Null(n.PassOwner));
        Autograd.Backward([loss], retainGraph: true);
        Assert.All(nodes, n => Assert.Null(n.PassOwner));
        Assert.All(nodes, n => Assert.Null(n.PassGrad));
    }

    [Fact]
    public void NoNodeStaysClaimed_WhenAPassThrowsHalfWay()
    {
        var (loss, _, _) = SecondOrderGraph();
        var nodes = Nodes(loss);
        loss.Backward();
        // The graph was freed: the second pass throws from the first node's backward, after claiming every node.
        var error = Assert.Throws<InvalidOperationException>(() => loss.Backward());
        Assert.Contains("second time", error.Message);
        Assert.All(nodes, n => Assert.Null(n.PassOwner));
        Assert.All(nodes, n => Assert.Null(n.PassGrad));
    }

    [Fact]
    public void APassFindingANodeHeldByAnotherPass_UsesMaps_AndLeavesThatPassesStateAlone()
    {
        var (loss, w1, b1) = SecondOrderGraph();
        var nodes = Nodes(loss);
        var expectedTargets = Grads(loss, [w1, b1]);
        // A twin graph (same values, its own leaves) for the pass without targets.
        var (twin, _, _) = SecondOrderGraph();
        var twinLeaves = Nodes(twin).SelectMany(n => n.Inputs).Where(e => e.Leaf is not null).Select(e => e.Leaf!).Distinct().ToList();
        Autograd.Backward([twin], retainGraph: true);
        var expectedLeaves = twinLeaves.Select(l => l.Grad!.ToDoubleArray()).ToList();

        foreach (int k in new[] { 0, nodes.Count / 2, nodes.Count - 1 })
        {
            // Another pass holds node k, with a gradient of its own in the node.
            var other = new Tape.Engine(null);
            var bogus = Tensor.FromArray(new double[] { 1e9 }, [1]);
            nodes[k].PassOwner = other;
            nodes[k].PassGrad = bogus;
            try
            {
                var got = Grads(loss, [w1, b1]);
                Assert.Equal(expectedTargets.Length, got.Length);
                for (int i = 0; i < got.Length; i++)
                {
                    Assert.Equal(expectedTargets[i], got[i]);
                }
                Assert.Same(other, nodes[k].PassOwner);
                Assert.Same(bogus, nodes[k].PassGrad);
                Assert.All(nodes.Where((_, i) => i != k), n => Assert.Null(n.PassOwner));
            }
            finally
            {
                nodes[k].PassOwner = null;
                nodes[k].PassGrad = null;
            }
        }

        // The same for a pass without targets (Backward into the leaves' Grad).
        var twinNodes = Nodes(twin);
        var held = twinNodes[twinNodes.Count / 2];
        foreach (var leaf in twinLeaves)
        {
            leaf.Grad = null;
        }
        held.PassOwner = new Tape.Engine(null);
        try
        {
            Autograd.Backward([twin], retainGraph: true);
        }
        finally
        {
            held.PassOwner = null;
        }
        for (int i = 0; i < twinLeaves.Count; i++)
        {
            Assert.Equal(expectedLeaves[i], twinLeaves[i].Grad!.ToDoubleArray());
        }
    }

    [Fact]
    public void PassesOnSeveralThreadsOverOneGraph_GiveTheSequentialGradients()
    {
        var (loss, w1, b1) = SecondOrderGraph();
        var expected = Grads(loss, [w1, b1]);
        var nodes = Nodes(loss);
        AssertConcurrentPassesGive(expected, loss, [w1, b1], passes: 150);
        Assert.All(nodes, n => Assert.Null(n.PassOwner));
    }

    [Theory]
    [InlineData(5)]
    [InlineData(40)] // beyond the leaves a pass finds by a scan: an index
    public void BackwardIntoManyLeaves_GivesEachLeafItsGradient(int count)
    {
        var g = new Generator(12);
        var x = Tensor.Randn([3, 4], DType.Float64, g);
        var leaves = Enumerable.Range(0, count).Select(_ => Tensor.Randn([4, 4], DType.Float64, g).WithRequiresGrad()).ToList();
        Tensor Loss()
        {
            // Each leaf twice (a product and a square), neighbours chained, so slots accumulate.
            var h = x;
            var total = Tensor.Zeros([], DType.Float64);
            for (int i = 0; i < count; i++)
            {
                h = Tensor.MatMul(h, leaves[i]).Tanh();
                total = total + h.Sum() + (leaves[i] * leaves[i]).Sum() * 0.1;
            }
            return total;
        }
        var expected = Autograd.Grad([Loss()], leaves);
        Loss().Backward();
        for (int i = 0; i < count; i++)
        {
            Assert.Equal(expected[i]!.ToDoubleArray(), leaves[i].Grad!.ToDoubleArray());
        }
    }

    [Fact]
    public void PassesOnSeveralThreadsOverOneGraph_NeverAddIntoAnotherPassesSlots()
    {
        // x feeds several products, so a pass adds product gradients into x's slot (a GEMM with β = 1);
        // a pass that finds the graph held by another keeps its state in maps and must not reach the
        // holder's slots through the nodes it shares.
        var g = new Generator(13);
        var x = Tensor.Randn([16, 16], DType.Float64, g).WithRequiresGrad();
        var ws = Enumerable.Range(0, 6).Select(_ => Tensor.Randn([16, 16], DType.Float64, g).WithRequiresGrad()).ToList();
        var y = Tensor.MatMul(x, ws[0]).Tanh();
        for (int i = 1; i < ws.Count; i++)
        {
            y = y + Tensor.MatMul(x, ws[i]).Tanh() + Tensor.MatMul(y, ws[i]);
        }
        var loss = y.Square().Sum();
        Tensor[] targets = [x, .. ws];
        var expected = Grads(loss, targets);
        AssertConcurrentPassesGive(expected, loss, targets, passes: 300);
    }

    /// <summary>Four threads start together and each runs <paramref name="passes"/> Grad passes (graph kept) over one graph; every gradient must be <paramref name="expected"/>, bit for bit.</summary>
    private static void AssertConcurrentPassesGive(double[][] expected, Tensor loss, Tensor[] targets, int passes)
    {
        const int threads = 4;
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        using var start = new Barrier(threads);
        var workers = Enumerable.Range(0, threads).Select(t => new Thread(() =>
        {
            start.SignalAndWait();
            for (int p = 0; p < passes && failures.IsEmpty; p++)
            {
                var got = Grads(loss, targets);
                for (int i = 0; i < got.Length; i++)
                {
                    if (!got[i].AsSpan().SequenceEqual(expected[i]))
                    {
                        failures.Add($"thread {t}, pass {p}, gradient {i}");
                    }
                }
            }
        })).ToList();
        workers.ForEach(w => w.Start());
        workers.ForEach(w => w.Join());
        Assert.Empty(failures);
    }
}
