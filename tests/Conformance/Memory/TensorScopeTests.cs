using Higher.Functional;
using Higher.GradCheck;
using Higher.Nn;
using Higher.Optim;
using Higher.Reference;

namespace Higher.Conformance.Memory;

/// <summary>
/// <see cref="TensorScope"/>: what is released, what survives (parameters, their Grad, buffers, kept
/// tensors, views of outer storages), the error of a released tensor, nesting, exceptions, threads and
/// async flows. Each test runs on its own device (a Reference backend with a private pool), so the
/// pool's counters see this test's storages only.
/// </summary>
public sealed class TensorScopeTests
{
    private static int s_nextDevice = 40;

    /// <summary>A fresh cpu:N served by the Reference kernels over a private pool.</summary>
    internal static (Device Device, CpuBufferPool Pool) PrivateDevice()
    {
        var pool = new CpuBufferPool();
        var device = new Device(DeviceType.Cpu, Interlocked.Increment(ref s_nextDevice));
        Backends.Register(new ForwardingBackend(new ReferenceBackend(1, pool), device));
        return (device, pool);
    }

    [Fact]
    public void TensorsCreatedInside_AreReleased_AndTheirArraysGoBackToThePool()
    {
        var (dev, pool) = PrivateDevice();
        var outer = Tensor.Full([10, 40], 2, DType.Float32, dev);
        long baseline = pool.Statistics.BytesInUse;
        Tensor inner, sum;
        using (var scope = Tensor.NewScope("test"))
        {
            inner = Tensor.Full([10, 40], 3, DType.Float32, dev);
            sum = inner + outer;
            Assert.Same(scope, TensorScope.Current);
            Assert.Equal(2, scope.Count);
            Assert.Equal(5f, sum.ToFloatArray()[0]);
            Assert.True(pool.Statistics.BytesInUse > baseline);
        }
        Assert.Null(TensorScope.Current);
        Assert.Equal(baseline, pool.Statistics.BytesInUse);
        Assert.True(inner.IsReleased);
        Assert.True(sum.IsReleased);
        Assert.False(outer.IsReleased);
        Assert.Equal(2f, outer.ToFloatArray()[399]);
    }

    [Fact]
    public void AReleasedTensor_UsedAgain_ThrowsNamingItAndTheScope()
    {
        var (dev, _) = PrivateDevice();
        Tensor t;
        using (Tensor.NewScope("inner loop"))
        {
            t = Tensor.Zeros([2, 3], DType.Float64, dev);
            t.Name = "w";
        }
        var e = Assert.Throws<ObjectDisposedException>(() => t.ToDoubleArray());
        Assert.Contains("'w' [2, 3] float64", e.Message, StringComparison.Ordinal);
        Assert.Contains("released by scope 'inner loop'", e.Message, StringComparison.Ordinal);
        Assert.Throws<ObjectDisposedException>(() => t + t);
        Assert.Throws<ObjectDisposedException>(() => t.Reshape(6).Sum());
        Assert.Throws<ObjectDisposedException>(() => Tensor.Zeros([2, 3], DType.Float64, dev).AddInPlace(t));
        Assert.Equal("tensor(<'w' [2, 3] float64, released by scope 'inner loop'>)", t.ToString());
        // Metadata stays readable for messages.
        Assert.Equal(DType.Float64, t.DType);
        Assert.Equal(new Shape(2, 3), t.Shape);
    }

    [Fact]
    public void Keep_MovesToTheEnclosingScope_AndRunKeepsItsResult()
    {
        var (dev, pool) = PrivateDevice();
        long baseline = pool.Statistics.BytesInUse;
        Tensor kept, keptInner, dropped;
        using (var outer = Tensor.NewScope("outer"))
        {
            using (var inner = Tensor.NewScope("inner"))
            {
                Assert.Same(outer, inner.Outer);
                keptInner = inner.Keep(Tensor.Full([4], 1, DType.Float32, dev) * 3);
                dropped = Tensor.Full([4], 9, DType.Float32, dev);
                Assert.Equal(1, outer.Count);
            }
            Assert.True(dropped.IsReleased);
            Assert.Equal(new float[] { 3, 3, 3, 3 }, keptInner.ToFloatArray());
            kept = outer.Keep(keptInner);
        }
        Assert.False(kept.IsReleased);
        Assert.Equal(new float[] { 3, 3, 3, 3 }, kept.ToFloatArray());

        var result = TensorScope.Run(() => (Tensor.Full([3], 2, DType.Float32, dev) * 5).Sum());
        Assert.Equal(30, result.Item()); // its float64 copy for Item is released at once
        // Only the two kept tensors remain: the kept product and Run's result (64-byte classes).
        Assert.Equal(baseline + 64 + 64, pool.Statistics.BytesInUse);
    }

    [Fact]
    public void MoveTo_HandsATensorToAnotherScope_OrToTheGarbageCollector()
    {
        var (dev, _) = PrivateDevice();
        Tensor toGc, toOuter;
        using (var outer = Tensor.NewScope())
        {
            using (Tensor.NewScope())
            {
                toGc = Tensor.Ones([2], DType.Float32, dev).MoveTo(null);
                toOuter = Tensor.Ones([2], DType.Float32, dev).MoveTo(outer);
            }
            Assert.False(toOuter.IsReleased);
        }
        Assert.True(toOuter.IsReleased);
        Assert.Equal(new float[] { 1, 1 }, toGc.ToFloatArray());
    }

    [Fact]
    public void Views_ShareTheFate_OfTheirStorage()
    {
        var (dev, pool) = PrivateDevice();
        var outerTensor = Tensor.Full([2, 3], 4, DType.Float32, dev);
        long baseline = pool.Statistics.BytesInUse;
        Tensor viewOfOuter, keptView, baseOfKept, otherView;
        using (var scope = Tensor.NewScope())
        {
            viewOfOuter = outerTensor.Reshape(6);      // made inside, storage from outside: never released by the scope
            baseOfKept = Tensor.Full([2, 3], 5, DType.Float32, dev);
            keptView = scope.Keep(baseOfKept.Reshape(3, 2).Detach());
            var doomed = Tensor.Full([6], 1, DType.Float32, dev);
            otherView = doomed.Reshape(2, 3);
        }
        Assert.Equal(4f, viewOfOuter.ToFloatArray()[5]);
        Assert.False(baseOfKept.IsReleased);           // a survivor views its storage
        Assert.Equal(5f, baseOfKept.ToFloatArray()[0]);
        Assert.Equal(5f, keptView.ToFloatArray()[5]);
        Assert.True(otherView.IsReleased);
        Assert.Equal(baseline + 64, pool.Statistics.BytesInUse); // the kept storage (24 bytes: the 64-byte class) is all that is left
    }

    [Fact]
    public void ParametersGradAndBuffers_SurviveATrainingStepInsideTheScope_WithTheirValues()
    {
        var (dev, pool) = PrivateDevice();
        var g = new Generator(3);
        var model = new Sequential(new Linear(3, 4, generator: g), new BatchNorm1d(4), new Relu(), new Linear(4, 1, generator: g));
        model.To(dev);
        model.To(DType.Float64);
        var opt = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 });
        var x = Tensor.Randn([8, 3], DType.Float64, g, dev);
        var y = Tensor.Randn([8, 1], DType.Float64, g, dev);

        // The same step without a scope, on a copy: the values the scope must not change.
        var g2 = new Generator(3);
        var twin = new Sequential(new Linear(3, 4, generator: g2), new BatchNorm1d(4), new Relu(), new Linear(4, 1, generator: g2));
        twin.To(dev);
        twin.To(DType.Float64);
        var twinOpt = new Sgd(twin.Parameters(), new SgdOptions { Lr = 0.1 });
        F.MseLoss(twin.Forward(x), y).Backward();
        twinOpt.Step();

        using (var scope = Tensor.NewScope())
        {
            scope.Keep(model); // BatchNorm replaces its running statistics with tensors made here
            F.MseLoss(model.Forward(x), y).Backward();
            opt.Step();
        }
        foreach (var ((name, p), (_, q)) in model.NamedParameters().Zip(twin.NamedParameters()))
        {
            Assert.Equal(q.ToDoubleArray(), p.ToDoubleArray());
            Assert.NotNull(p.Grad);
            Assert.Equal(q.Grad!.ToDoubleArray(), p.Grad!.ToDoubleArray());
            Assert.False(p.Grad.IsReleased, name);
        }
        foreach (var ((name, b), (_, c)) in model.NamedBuffers().Zip(twin.NamedBuffers()))
        {
            Assert.False(b.IsReleased, name);
            Assert.Equal(c.ToDoubleArray(), b.ToDoubleArray());
        }
        // A second step (in a new scope) reads the surviving buffers and grads.
        using (var scope = Tensor.NewScope())
        {
            scope.Keep(model);
            opt.ZeroGrad();
            F.MseLoss(model.Forward(x), y).Backward();
            opt.Step();
            opt.ZeroGrad();
        }
        Assert.All(model.Parameters(), p => Assert.Null(p.Grad));
        GC.KeepAlive(pool);
    }

    [Fact]
    public void GradAssignedInsideToAParameter_Survives_WithoutAnyKeep()
    {
        var (dev, _) = PrivateDevice();
        var w = Tensor.Full([3], 2, DType.Float64, dev).WithRequiresGrad();
        using (Tensor.NewScope())
        {
            (w * w).Sum().Backward();
        }
        Assert.Equal(new double[] { 4, 4, 4 }, w.Grad!.ToDoubleArray());
    }

    [Fact]
    public void AnExceptionInsideTheScope_StillReleases_AndTheOuterScopeIsCurrentAgain()
    {
        var (dev, pool) = PrivateDevice();
        long baseline = pool.Statistics.BytesInUse;
        Tensor made = null!;
        using var outer = Tensor.NewScope("outer");
        var e = Assert.Throws<ArgumentException>(() =>
        {
            using var scope = Tensor.NewScope("failing");
            made = Tensor.Ones([100], DType.Float32, dev);
            _ = made + Tensor.Ones([3], DType.Float32, dev); // cannot broadcast
        });
        Assert.Contains("broadcast", e.Message, StringComparison.OrdinalIgnoreCase);
        Assert.True(made.IsReleased);
        Assert.Equal(baseline, pool.Statistics.BytesInUse);
        Assert.Same(outer, TensorScope.Current);
    }

    [Fact]
    public void OutOfOrderDisposal_SendsSurvivorsToTheNearestLiveScope()
    {
        var (dev, _) = PrivateDevice();
        var a = Tensor.NewScope("a");
        var b = Tensor.NewScope("b");
        var t = b.Keep(Tensor.Ones([2], DType.Float32, dev)); // now governed by a
        a.Dispose();                                           // a ends first: t is released
        Assert.True(t.IsReleased);
        var u = b.Keep(Tensor.Ones([2], DType.Float32, dev));  // b's outer is gone: u goes to the GC
        b.Dispose();
        Assert.False(u.IsReleased);
        Assert.Null(TensorScope.Current);
        b.Dispose(); // idempotent
        Assert.Throws<ObjectDisposedException>(() => b.Keep(u));
    }

    [Fact]
    public void ScopeOnAnotherThread_GovernsThatThreadOnly()
    {
        var (dev, _) = PrivateDevice();
        Tensor? fromThread = null, inThreadScope = null;
        using var scope = Tensor.NewScope("main");
        var here = Tensor.Ones([2], DType.Float32, dev);
        var thread = new Thread(() =>
        {
            // A thread started inside the scope flows into it, as tasks do; its own scope governs its own tensors.
            using (var own = Tensor.NewScope("thread"))
            {
                Assert.Same(scope, own.Outer);
                inThreadScope = Tensor.Ones([2], DType.Float32, dev);
            }
            fromThread = Tensor.Ones([2], DType.Float32, dev);
        });
        thread.Start();
        thread.Join();
        Assert.True(inThreadScope!.IsReleased);
        Assert.False(fromThread!.IsReleased);
        Assert.Same(scope, TensorScope.Current); // the thread's scope never became current here
        scope.Dispose();
        Assert.True(fromThread.IsReleased);   // it was created in the flow of "main"
        Assert.True(here.IsReleased);
    }

    [Fact]
    public void TensorsMadeAtOnceOnTheOpeningThreadAndOnOthers_AreAllCountedAndReleased()
    {
        // The opening thread appends without the lock; the other threads take it. Both at once, many times, so
        // the opening thread's list grows while the others add.
        var (dev, pool) = PrivateDevice();
        long baseline = pool.Statistics.BytesInUse;
        var made = new System.Collections.Concurrent.ConcurrentBag<Tensor>();
        using (var scope = Tensor.NewScope("shared"))
        {
            // Threads started inside the scope flow into it, as tasks do.
            var others = Enumerable.Range(0, 3).Select(_ => new Thread(() =>
            {
                for (int i = 0; i < 1000; i++)
                {
                    made.Add(Tensor.Ones([4], DType.Float32, dev));
                }
            })).ToArray();
            foreach (var t in others)
            {
                t.Start();
            }
            for (int i = 0; i < 1000; i++)
            {
                made.Add(Tensor.Ones([4], DType.Float32, dev));
            }
            foreach (var t in others)
            {
                t.Join();
            }
            Assert.Equal(4000, scope.Count);
        }
        Assert.Equal(4000, made.Count);
        Assert.All(made, t => Assert.True(t.IsReleased));
        Assert.Equal(baseline, pool.Statistics.BytesInUse);
    }

    [Fact]
    public async Task ScopeAcrossAwaits_FollowsTheAsyncFlow()
    {
        var (dev, pool) = PrivateDevice();
        long baseline = pool.Statistics.BytesInUse;
        Tensor before, after, elsewhere = null!;
        using (var scope = Tensor.NewScope("async"))
        {
            before = Tensor.Ones([16], DType.Float32, dev);
            await Task.Yield();
            after = Tensor.Ones([16], DType.Float32, dev) + before;
            await Task.Run(() => elsewhere = Tensor.Ones([16], DType.Float32, dev));
            Assert.Same(scope, TensorScope.Current);
            Assert.Equal(4, scope.Count); // before, the second ones, their sum, and the task's tensor
            Assert.Equal(2f, after.ToFloatArray()[0]);
        }
        Assert.True(before.IsReleased && after.IsReleased && elsewhere.IsReleased);
        Assert.Equal(baseline, pool.Statistics.BytesInUse);
    }

    [Fact]
    public void InnerLoopContext_IsAScope_ThatKeepsTheModelAndTheMetaGradient()
    {
        var (dev, pool) = PrivateDevice();
        var g = new Generator(11);
        var model = new Sequential(new Linear(1, 8, generator: g), new Relu(), new Linear(8, 1, generator: g));
        model.To(dev);
        var x = Tensor.Randn([5, 1], DType.Float32, g, dev);
        var y = Tensor.Randn([5, 1], DType.Float32, g, dev);
        long baseline = pool.Statistics.BytesInUse;
        Tensor loss, support;
        using (var ctx = InnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1 }), copyInitialWeights: false, releaseOnDispose: true))
        {
            var (fmodel, diffopt) = ctx;
            support = F.MseLoss(fmodel.Forward(x), y);
            diffopt.Step(support);
            loss = ctx.Keep(F.MseLoss(fmodel.Forward(x), y));
            loss.Backward();
        }
        Assert.True(support.IsReleased);
        Assert.False(loss.IsReleased);
        Assert.All(model.Parameters(), p => Assert.False(p.Grad!.IsReleased));
        // What is left: the kept loss, the meta-gradients, the adapted fast weights (the context's results).
        long grads = model.Parameters().Sum(p => CpuBufferPool.SizeClass(p.Numel * 4));
        Assert.Equal(baseline + CpuBufferPool.SizeClass(4) + (2 * grads), pool.Statistics.BytesInUse);
    }
}
