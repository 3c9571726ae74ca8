using Higher.Conformance.Memory;

namespace Higher.Conformance.Engine;

/// <summary>
/// A backward pass that records nothing adds a second gradient into the first one's storage when
/// that storage is the pass's own and only this slot holds it; otherwise it allocates the sum.
/// Either way every gradient is what the out-of-place sum gives, bit for bit.
/// </summary>
public sealed class InPlaceAccumulationTests
{
    [Fact]
    public void AGradientSharedByTwoSlots_IsNotChangedWhenOneSlotAccumulates()
    {
        // (x + y) hands the one incoming gradient to both x and y; x then receives 3·g from x·3.
        // Writing that sum into the shared tensor would also give y 4 instead of 1.
        var x = Tensor.FromArray(new double[] { 1, 2, 3 }, [3]).WithRequiresGrad();
        var y = Tensor.FromArray(new double[] { 4, 5, 6 }, [3]).WithRequiresGrad();
        // Both orders of the two terms, so that the shared tensor is the first contribution in one of them.
        foreach (var loss in new[] { (x + y).Sum() + (x * 3).Sum(), (x * 3).Sum() + (x + y).Sum(), (x * 3 + (x + y)).Sum(), ((x + y) + x * 3).Sum() })
        {
            var grads = Autograd.Grad([loss], [x, y]);
            Assert.Equal(new double[] { 4, 4, 4 }, grads[0]!.ToDoubleArray());
            Assert.Equal(new double[] { 1, 1, 1 }, grads[1]!.ToDoubleArray());
        }
    }

    [Fact]
    public void OneTensorReturnedToBothInputsOfAnOp_IsAddedOutOfPlace()
    {
        // x·x returns the one product g·x for both of its inputs: the second add is of the tensor to itself.
        var x = Tensor.FromArray(new double[] { 1, -2, 3 }, [3]).WithRequiresGrad();
        var g = Autograd.Grad([(x * x).Sum() + (x * 5).Sum()], [x])[0]!;
        Assert.Equal(new double[] { 7, 1, 11 }, g.ToDoubleArray());
    }

    [Fact]
    public void ManyContributions_GiveTheBitsOfTheRecordedPass()
    {
        // The same sums with createGraph (where nothing is added in place) and without.
        var gen = new Generator(5);
        var x = Tensor.Normal([8, 9], 0, 1, DType.Float32, gen).WithRequiresGrad();
        var w = Tensor.Normal([9, 9], 0, 1, DType.Float32, gen).WithRequiresGrad();
        Tensor Loss()
        {
            var h = Tensor.MatMul(x, w).Tanh();
            return (Tensor.MatMul(h, w) * x.Sin() + h.Square() * 0.3 + Tensor.MatMul(x, w.Transpose(0, 1))).Sum();
        }
        var plain = Autograd.Grad([Loss()], [x, w]);
        var recorded = Autograd.Grad([Loss()], [x, w], createGraph: true);
        for (int i = 0; i < 2; i++)
        {
            Assert.Equal(recorded[i]!.ToDoubleArray(), plain[i]!.ToDoubleArray());
        }
    }

    [Fact]
    public void AccumulatingInPlace_AllocatesFewerArrays()
    {
        // x used four times: three adds. Out of place each makes a [64, 64] array; in place none does.
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var x = Tensor.Rand([64, 64], DType.Float32, new Generator(2), device).WithRequiresGrad();
        var loss = (x.Sin() + x.Cos() + x.Exp() + x.Tanh()).Sum();
        long before = pool.Statistics.Rents;
        var g = Autograd.Grad([loss], [x])[0]!;
        long rents = pool.Statistics.Rents - before;
        // 11 arrays with the three accumulations in place (counted); 14 when each sum allocates.
        Assert.True(rents <= 11, $"{rents} arrays rented for the backward");
        var xs = x.ToDoubleArray();
        var expected = xs.Select(v => Math.Cos(v) - Math.Sin(v) + Math.Exp(v) + (1 - Math.Tanh(v) * Math.Tanh(v))).ToArray();
        var actual = g.ToDoubleArray();
        for (int i = 0; i < xs.Length; i++)
        {
            Assert.Equal(expected[i], actual[i], 1e-5);
        }
    }

    [Fact]
    public void ProductGradients_GoStraightIntoTheirSlot_WithoutAnArrayEach()
    {
        // x·W1 + x·W2 + ... : the add nodes hand one gradient to every product; the first product's
        // gradient for x makes x's slot, each later one is a GEMM with β = 1 into it (no new array).
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var gen = new Generator(8);
        var x = Tensor.Rand([16, 24], DType.Float32, gen, device).WithRequiresGrad();
        var ws = Enumerable.Range(0, 4).Select(_ => Tensor.Rand([24, 12], DType.Float32, gen, device)).ToArray();
        long Rents(int products)
        {
            var y = Tensor.MatMul(x, ws[0]);
            for (int i = 1; i < products; i++)
            {
                y = y + Tensor.MatMul(x, ws[i]);
            }
            var loss = y.Sum();
            long before = pool.Statistics.Rents;
            _ = Autograd.Grad([loss], [x]);
            return pool.Statistics.Rents - before;
        }
        Assert.Equal(Rents(1), Rents(4));
    }

    [Fact]
    public void ProductGradientsAddedIntoTheirSlots_AreTheBitsOfTheRecordedPass()
    {
        // Weights used in several products (their slot is a leaf's, by Grad and by Backward), an input
        // used in products and elementwise ops, x·x (one slot receiving both of a product's gradients),
        // and a transposed use: with createGraph nothing is added in place.
        var gen = new Generator(9);
        var x = Tensor.Normal([12, 12], 0, 1, DType.Float32, gen).WithRequiresGrad();
        var w = Tensor.Normal([12, 12], 0, 1, DType.Float32, gen).WithRequiresGrad();
        var v = Tensor.Normal([12, 7], 0, 1, DType.Float32, gen).WithRequiresGrad();
        Tensor Loss()
        {
            var h = Tensor.MatMul(x, w).Tanh();
            var k = Tensor.MatMul(h, w) + Tensor.MatMul(x, x) + Tensor.MatMul(w.Transpose(0, 1), x) + x.Sin();
            return (Tensor.MatMul(k, v) * Tensor.MatMul(h, v)).Sum() + Tensor.MatMul(k, w).Square().Sum() * 0.01;
        }
        var recorded = Autograd.Grad([Loss()], [x, w, v], createGraph: true);
        var plain = Autograd.Grad([Loss()], [x, w, v]);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(recorded[i]!.ToDoubleArray(), plain[i]!.ToDoubleArray());
        }
        Loss().Backward();
        Assert.Equal(recorded[0]!.ToDoubleArray(), x.Grad!.ToDoubleArray());
        Assert.Equal(recorded[1]!.ToDoubleArray(), w.Grad!.ToDoubleArray());
        Assert.Equal(recorded[2]!.ToDoubleArray(), v.Grad!.ToDoubleArray());
    }

    [Fact]
    public void AProductAddedIntoItsSlot_OverManyKBlocks_IsTheBitsOfTheRecordedPass()
    {
        // The weights' gradients are xᵀ·g with k = 1100 rows, more than two K blocks of the reference GEMM.
        var gen = new Generator(11);
        var x = Tensor.Normal([1100, 6], 0, 1, DType.Float32, gen);
        var w = Tensor.Normal([6, 5], 0, 1, DType.Float32, gen).WithRequiresGrad();
        var v = Tensor.Normal([6, 5], 0, 1, DType.Float32, gen).WithRequiresGrad();
        Tensor Loss() => (Tensor.MatMul(x, w).Tanh() * Tensor.MatMul(x, v) + Tensor.MatMul(x, w + v).Square()).Sum();
        var recorded = Autograd.Grad([Loss()], [w, v], createGraph: true);
        var plain = Autograd.Grad([Loss()], [w, v]);
        Assert.Equal(recorded[0]!.ToDoubleArray(), plain[0]!.ToDoubleArray());
        Assert.Equal(recorded[1]!.ToDoubleArray(), plain[1]!.ToDoubleArray());
    }

    [Fact]
    public void ASquareProductsGradient_MatchesItsClosedForm()
    {
        // d/dX sum(X·X) = 1·Xᵀ + Xᵀ·1, both of the product's gradients going to X's one slot.
        var x = Tensor.FromArray(new double[] { 1, -2, 0.5, 3, 4, -1, 2, 0, -3 }, [3, 3]).WithRequiresGrad();
        var loss = (Tensor.MatMul(x, x) + x * 2).Sum();
        var g = Autograd.Grad([loss], [x])[0]!.ToDoubleArray();
        var xs = x.ToDoubleArray();
        for (int i = 0; i < 3; i++)
        {
            for (int j = 0; j < 3; j++)
            {
                // (1·Xᵀ)_ij = Σ_k X_jk, (Xᵀ·1)_ij = Σ_k X_ki.
                double expected = 2 + Enumerable.Range(0, 3).Sum(k => xs[(j * 3) + k] + xs[(k * 3) + i]);
                Assert.Equal(expected, g[(i * 3) + j], 1e-12);
            }
        }
    }

    [Fact]
    public void AGradientSharedByTwoSlots_IsNotAProductsAccumulator()
    {
        // (x + y) hands one gradient to both x and y; a product of x then adding its gradient into that
        // tensor would give y the product's gradient as well. Leaves (target slots) and non-leaves.
        var gen = new Generator(10);
        var x = Tensor.Normal([5, 5], 0, 1, DType.Float64, gen).WithRequiresGrad();
        var y = Tensor.Normal([5, 5], 0, 1, DType.Float64, gen).WithRequiresGrad();
        var w = Tensor.Normal([5, 5], 0, 1, DType.Float64, gen);
        var rows = Tensor.Normal([5, 5], 0, 1, DType.Float64, gen);
        foreach (bool nonLeaf in new[] { false, true })
        {
            var a = nonLeaf ? x * 1 : x;
            var b = nonLeaf ? y * 1 : y;
            foreach (var loss in new[]
            {
                ((a + b) * rows).Sum() + Tensor.MatMul(a, w).Sum(),
                Tensor.MatMul(a, w).Sum() + ((a + b) * rows).Sum(),
                (Tensor.MatMul(a, w) + (a + b)).Sum(),
                ((a + b) + Tensor.MatMul(w, a)).Sum(),
            })
            {
                var recorded = Autograd.Grad([loss], [x, y], createGraph: true);
                var plain = Autograd.Grad([loss], [x, y], retainGraph: true);
                Assert.Equal(recorded[1]!.ToDoubleArray(), plain[1]!.ToDoubleArray());
                Assert.Equal(recorded[0]!.ToDoubleArray(), plain[0]!.ToDoubleArray());
            }
        }
    }
    [Fact]
    public void BatchNormGradientsAddedIntoTheirSlots_AreTheBitsOfNewTensorsAddedAfter_WithFewerArrays()
    {
        // A second-order meta-gradient through conv, batch norm and ReLU: its final backward records nothing, so
        // the fused batch-norm kernels add their x and gy gradients into the slots that already hold one. With the
        // slots withheld (every backward returns a new tensor, which the slot then adds) the gradients are the same
        // bits, and the backward rents more arrays.
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var gen = new Generator(21);
        var x = Tensor.Normal([6, 2, 9, 9], 0, 1, DType.Float32, gen, device);
        var conv = Tensor.Normal([5, 2, 3, 3], 0, 0.4, DType.Float32, gen, device).WithRequiresGrad();
        var bnw = Tensor.Normal([5], 1, 0.2, DType.Float32, gen, device).WithRequiresGrad();
        var bnb = Tensor.Normal([5], 0, 0.2, DType.Float32, gen, device).WithRequiresGrad();
        var target = Tensor.Normal([6, 5, 7, 7], 0, 1, DType.Float32, gen, device);
        Tensor Loss(Tensor w, Tensor g, Tensor b)
        {
            var y = Tensor.BatchNorm(Tensor.Conv2d(x, w), null, null, g, b, training: true).Relu();
            return (y - target).Square().Mean();
        }
        (double[][] Grads, long Rents) Run(bool withhold)
        {
            var (w, g, b) = (conv, bnw, bnb);
            for (int step = 0; step < 2; step++)
            {
                var d = Autograd.Grad([Loss(w, g, b)], [w, g, b], createGraph: true);
                (w, g, b) = (w - d[0]! * 0.1, g - d[1]! * 0.1, b - d[2]! * 0.1);
            }
            var meta = Loss(w, g, b) + (w.Square().Sum() * 0.01);
            long before = pool.Statistics.Rents;
            Tape.Engine.NoAccumulatorsOnThisThread = withhold;
            try
            {
                var grads = Autograd.Grad([meta], [conv, bnw, bnb]);
                return (grads.Select(t => t!.ToDoubleArray()).ToArray(), pool.Statistics.Rents - before);
            }
            finally
            {
                Tape.Engine.NoAccumulatorsOnThisThread = false;
            }
        }
        var (withheld, withheldRents) = Run(true);
        var (taken, takenRents) = Run(false);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(withheld[i], taken[i]);
        }
        Assert.True(takenRents < withheldRents, $"{takenRents} arrays rented with the slots taken, {withheldRents} without");
    }
    [Fact]
    public void ASumsBroadcastGradientAddedIntoItsSlot_IsTheBitsOfExpandingAndAdding_WithFewerArrays()
    {
        // x feeds a channel sum (its gradient a broadcast of [1, C, 1]) and elementwise ops; in either order of the
        // two terms, with the slots withheld and the sum's gradient broadcast at once, and with both taken: the same
        // bits (two terms add the same either way), and fewer arrays where the sum's gradient finds x's slot (or an
        // intermediate's) already holding one, or waits for it.
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var gen = new Generator(22);
        var x = Tensor.Normal([5, 6, 33], 0, 1, DType.Float32, gen, device).WithRequiresGrad();
        var v = Tensor.Normal([6], 0, 1, DType.Float32, gen, device);
        long takenTotal = 0, withheldTotal = 0;
        int deferrals = 0;
        foreach (bool sumFirst in new[] { true, false })
        {
            (double[] Grad, long Rents) Run(bool withhold)
            {
                var h = x.Tanh();
                var sumTerm = (h.Sum([0, 2]) * v).Sum();
                var squares = (h * x).Sum() * 0.5;
                var loss = sumFirst ? sumTerm + squares : squares + sumTerm;
                long before = pool.Statistics.Rents;
                Tape.Engine.NoAccumulatorsOnThisThread = withhold;
                Tape.Engine.NoDeferredBroadcastsOnThisThread = withhold;
                try
                {
                    Tape.Engine.DeferredBroadcastsOnThisThread = 0;
                    var g = Autograd.Grad([loss], [x])[0]!;
                    deferrals += Tape.Engine.DeferredBroadcastsOnThisThread;
                    return (g.ToDoubleArray(), pool.Statistics.Rents - before);
                }
                finally
                {
                    Tape.Engine.NoAccumulatorsOnThisThread = false;
                    Tape.Engine.NoDeferredBroadcastsOnThisThread = false;
                }
            }
            var (withheld, withheldRents) = Run(true);
            var (taken, takenRents) = Run(false);
            Assert.Equal(withheld, taken);
            takenTotal += takenRents;
            withheldTotal += withheldRents;
        }
        Assert.True(takenTotal < withheldTotal, $"{takenTotal} arrays rented with the slots taken, {withheldTotal} without");
        // Withheld, none waits; taken, the sum's gradient waits for the next term in one order, and its slot adds it in broadcast.
        Assert.True(deferrals > 0, "no sum's gradient waited for its slot and was added in broadcast");
    }

    [Fact]
    public void AConvBiasGradientWaitingInDysSlot_BecomesTheBiasOfTheConvolutionThatIsItsNextTerm_WithTheBitsOfTheBroadcastAdd()
    {
        // Two inner SGD steps of a float32 conv net (a 1-channel first layer on the direct path, a 64-channel second
        // layer on the broadcast path), then the meta-gradient. In its backward each layer's bias gradient (a channel
        // sum of the inner step's dy) reaches dy's slot first; the convolution that is dy's next term (the weight
        // gradient's, or the input gradient's, derivative for dy) takes it as its bias. Against sums' gradients
        // broadcast as they arrive (and added to the convolution in a pass of their own): the same bits, with the
        // convolutions taking it.
        var (device, _) = TensorScopeTests.PrivateDevice();
        var gen = new Generator(41);
        var conv1 = new global::Higher.Nn.Conv2d(1, 64, 3, generator: gen);
        var conv2 = new global::Higher.Nn.Conv2d(64, 64, 3, generator: gen);
        conv1.To(device);
        conv2.To(device);
        var x = Tensor.Normal([4, 1, 12, 12], 0, 1, DType.Float32, gen, device);
        var target = Tensor.Normal([4, 64, 8, 8], 0, 1, DType.Float32, gen, device);
        var start = conv1.Parameters().Concat(conv2.Parameters()).ToArray();

        Tensor Loss(Tensor[] p) =>
            (Tensor.Conv2d(Tensor.Conv2d(x, p[0], p[1]).Tanh(), p[2], p[3]) - target).Square().Mean();

        // Both layers' bias gradients, in both inner steps.
        AssertTakenWithTheBitsOfBroadcasting(Loss, start, 4, "as a convolution's bias");
    }

    /// <summary>
    /// The meta-gradient of two inner SGD steps (lr 0.1, second order) from <paramref name="start"/> under
    /// <paramref name="loss"/>, with sums' gradients broadcast at once and deferred: the same bits, none taken into a
    /// kernel in the first and at least <paramref name="takes"/> in the second.
    /// </summary>
    private static void AssertTakenWithTheBitsOfBroadcasting(Func<Tensor[], Tensor> loss, Tensor[] start, int takes, string where)
    {
        double[][] MetaGradient()
        {
            var p = start;
            for (int step = 0; step < 2; step++)
            {
                var d = Autograd.Grad([loss(p)], p, createGraph: true);
                p = p.Select((t, i) => t - (d[i]! * 0.1)).ToArray();
            }
            return Autograd.Grad([loss(p)], start).Select(m => m!.ToDoubleArray()).ToArray();
        }

        var (atOnce, _, none) = WithDeferral(false, MetaGradient);
        Assert.Equal(0, none);
        var (taken, _, kernels) = WithDeferral(true, MetaGradient);
        Assert.True(kernels >= takes, $"{kernels} sums' gradients taken {where}, expected at least {takes}");
        for (int i = 0; i < atOnce.Length; i++)
        {
            Assert.Equal(atOnce[i], taken[i]);
        }
    }

    [Fact]
    public void ABatchNormBiasGradientWaitingInGysSlot_IsAddedInTheWeightGradientsBackwardKernel_WithTheBitsOfTheBroadcastAdd()
    {
        // Two inner SGD steps of a conv (no bias) + training batch norm + tanh net, then the meta-gradient, in float32
        // and float64, on rows of 10 (a masked last step). In its backward the batch norm's bias gradient (Σ gy per
        // channel in the inner step) reaches gy's slot first; the batch-norm weight gradient's backward, gy's next
        // term, adds it to k·x̂ in its kernel. Against sums' gradients broadcast as they arrive: the same bits, with the
        // kernel taking it in both steps.
        foreach (var dtype in new[] { DType.Float32, DType.Float64 })
        {
            var (device, _) = TensorScopeTests.PrivateDevice();
            var gen = new Generator(43);
            var x = Tensor.Normal([4, 2, 12, 12], 0, 1, dtype, gen, device);
            var target = Tensor.Normal([4, 8, 10, 10], 0, 1, dtype, gen, device);
            Tensor[] start =
            [
                Tensor.Normal([8, 2, 3, 3], 0, 0.3, dtype, gen, device).WithRequiresGrad(),
                Tensor.Normal([8], 1, 0.2, dtype, gen, device).WithRequiresGrad(),
                Tensor.Normal([8], 0, 0.2, dtype, gen, device).WithRequiresGrad(),
            ];

            Tensor Loss(Tensor[] p) =>
                (Tensor.BatchNorm(Tensor.Conv2d(x, p[0]), null, null, p[1], p[2], training: true).Tanh() - target).Square().Mean();

            // The convolution has no bias: every take is the batch norm's, one per inner step.
            AssertTakenWithTheBitsOfBroadcasting(Loss, start, 2, $"into a {dtype.Name()} batch-norm kernel");
        }
    }

    /// <summary>
    /// Runs <paramref name="body"/> with sums' gradients deferred or broadcast at once, counting the deferrals added in
    /// by their slots and those a kernel took (a convolution as its bias, batch norm's weight-gradient backward into k·x̂).
    /// </summary>
    private static (T Result, int Deferred, int Taken) WithDeferral<T>(bool defer, Func<T> body)
    {
        Tape.Engine.NoDeferredBroadcastsOnThisThread = !defer;
        Tape.Engine.DeferredBroadcastsOnThisThread = 0;
        Tape.Engine.TakenBroadcastsOnThisThread = 0;
        try
        {
            var result = body();
            return (result, Tape.Engine.DeferredBroadcastsOnThisThread, Tape.Engine.TakenBroadcastsOnThisThread);
        }
        finally
        {
            Tape.Engine.NoDeferredBroadcastsOnThisThread = false;
        }
    }

    [Fact]
    public void ASumsGradientThatArrivesFirst_WaitsSmall_AndTheNextTermIsAddedToItBroadcast()
    {
        // A conv layer's bias gradient (a channel sum of g) in the inner step: in the second-order backward the sum's
        // gradient reaches g's slot before the other terms (the weight gradient's and the input gradient's). Deferred,
        // the next term is added to it broadcast in one pass instead of a full-size copy and an add: the deferral
        // happens, and the meta-gradient has the bits of broadcasting at once (the slot's sums in the same order).
        var (device, _) = TensorScopeTests.PrivateDevice();
        var gen = new Generator(31);
        var conv1 = new global::Higher.Nn.Conv2d(2, 4, 3, generator: gen);
        var conv2 = new global::Higher.Nn.Conv2d(4, 3, 3, generator: gen);
        conv1.To(DType.Float64).To(device);
        conv2.To(DType.Float64).To(device);
        var x = Tensor.Normal([3, 2, 9, 9], 0, 1, DType.Float64, gen, device);
        var parameters = conv1.Parameters().Concat(conv2.Parameters()).ToArray();

        double[][] MetaGradient()
        {
            var loss = conv2.Forward(conv1.Forward(x).Tanh()).Square().Sum();
            var grads = Autograd.Grad([loss], parameters, createGraph: true);
            var norm = grads.Select(gr => gr!.Square().Sum()).Aggregate((a, b) => a + b);
            var meta = Autograd.Grad([norm], parameters);
            return meta.Select(m => m!.ToDoubleArray()).ToArray();
        }

        var (atOnce, noDeferrals, noneTaken) = WithDeferral(false, MetaGradient);
        var (deferred, deferrals, taken) = WithDeferral(true, MetaGradient);
        Assert.Equal(0, noDeferrals + noneTaken);
        // Here the next term is a convolution, which takes the waiting gradient as its bias (the test below); the
        // elementwise test above has slots add it broadcast.
        Assert.True(deferrals + taken > 0, "no sum's gradient waited for its slot");
        for (int i = 0; i < atOnce.Length; i++)
        {
            Assert.Equal(atOnce[i], deferred[i]);
        }

        // First order, two terms meeting in one slot: the same bits either way.
        Tensor Loss() => (conv1.Forward(x).Sum([0, 2, 3]) * Tensor.Normal([4], 0, 1, DType.Float64, new Generator(5), device)).Sum()
            + conv1.Forward(x).Tanh().Sum();
        var (plain, _, _) = WithDeferral(false, () => Autograd.Grad([Loss()], parameters.Take(2).ToArray()).Select(g => g!.ToDoubleArray()).ToArray());
        var (waited, _, _) = WithDeferral(true, () => Autograd.Grad([Loss()], parameters.Take(2).ToArray()).Select(g => g!.ToDoubleArray()).ToArray());
        Assert.Equal(plain, waited);
    }
}
