namespace Higher;

/// <summary>
/// The default implementations of <see cref="IBackend"/>'s fused kernels: the separate kernels they
/// stand for, one after another, with the same roundings. A backend without a fused kernel of its own
/// runs these; the tests compare a backend's fused kernel with them.
/// </summary>
public static class ComposedKernels
{
    /// <summary>
    /// <see cref="IBackend.BatchNormBackward"/> as <see cref="IBackend.BatchNormInputGrad"/>, <see cref="IBackend.BatchNormWeightGrad"/>
    /// and <see cref="IBackend.BatchNorm"/> with a zero bias (whose statistics, recomputed from the same x, are those
    /// the caller passes), followed by a broadcasting <see cref="IBackend.Binary"/> add of scaledNormalizedBias where given;
    /// an accumulated output is computed into a temporary and added; the channel sums are <see cref="IBackend.Reduce"/>
    /// of gradY and of gradX once written.
    /// </summary>
    public static void BatchNormBackward(IBackend backend, in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage gradX, IStorage? gradWeight, IStorage? scaledNormalized, NormAccumulate accumulate = NormAccumulate.None,
        IStorage? gradYSums = null, IStorage? gradXSums = null, IStorage? scaledNormalizedBias = null)
    {
        if (scaledNormalizedBias != null && scaledNormalized == null)
        {
            throw new ArgumentException($"{backend.Name}.BatchNormBackward: scaledNormalizedBias is given without scaledNormalized.", nameof(scaledNormalizedBias));
        }
        var temps = new List<IStorage>(5);
        try
        {
            var gx = Target(backend, gradX, accumulate.HasFlag(NormAccumulate.GradX), geometry.Length, temps);
            backend.BatchNormInputGrad(geometry, gradY, x, mean, variance, weight, gx);
            AddInto(backend, gx, gradX, geometry.Length);
            ChannelSums(backend, geometry, gradY, gradYSums);
            ChannelSums(backend, geometry, gradX, gradXSums);
            if (gradWeight != null)
            {
                backend.BatchNormWeightGrad(geometry, gradY, x, mean, variance, gradWeight);
            }
            if (scaledNormalized == null)
            {
                return;
            }
            var zeroBias = backend.Allocate(x.DType, geometry.Channels);
            var batchMean = backend.AllocateUninitialized(x.DType, geometry.Channels);
            var batchVariance = backend.AllocateUninitialized(x.DType, geometry.Channels);
            temps.Add(zeroBias);
            temps.Add(batchMean);
            temps.Add(batchVariance);
            var xw = Target(backend, scaledNormalized, accumulate.HasFlag(NormAccumulate.Second), geometry.Length, temps);
            backend.BatchNorm(geometry, x, weight, zeroBias, xw, batchMean, batchVariance);
            if (scaledNormalizedBias != null)
            {
                var full = new Shape(geometry.Batch, geometry.Channels, geometry.Spatial);
                backend.Binary(BinaryOp.Add, xw, full, scaledNormalizedBias, new Shape(1, geometry.Channels, 1), xw, full);
            }
            AddInto(backend, xw, scaledNormalized, geometry.Length);
        }
        finally
        {
            foreach (var t in temps)
            {
                t.Dispose();
            }
        }
    }

    /// <summary><see cref="IBackend.BatchNormDoubleBackward"/> as <see cref="IBackend.BatchNormInputGrad"/>(h) and <see cref="IBackend.BatchNormInputGradBackward"/>.</summary>
    public static void BatchNormDoubleBackward(IBackend backend, in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage h, IStorage gradGradY, IStorage gradX, IStorage gradWeight, NormAccumulate accumulate = NormAccumulate.None)
    {
        var temps = new List<IStorage>(2);
        try
        {
            var ggy = Target(backend, gradGradY, accumulate.HasFlag(NormAccumulate.Second), geometry.Length, temps);
            backend.BatchNormInputGrad(geometry, h, x, mean, variance, weight, ggy);
            AddInto(backend, ggy, gradGradY, geometry.Length);
            var gx = Target(backend, gradX, accumulate.HasFlag(NormAccumulate.GradX), geometry.Length, temps);
            backend.BatchNormInputGradBackward(geometry, gradY, x, mean, variance, weight, h, gx, gradWeight);
            AddInto(backend, gx, gradX, geometry.Length);
        }
        finally
        {
            foreach (var t in temps)
            {
                t.Dispose();
            }
        }
    }

    /// <summary>The destination itself, or (to be added into it) a temporary of its dtype.</summary>
    private static IStorage Target(IBackend backend, IStorage destination, bool accumulate, long length, List<IStorage> temps)
    {
        if (!accumulate)
        {
            return destination;
        }
        var t = backend.AllocateUninitialized(destination.DType, length);
        temps.Add(t);
        return t;
    }

    /// <summary>
    /// sums[c] = Σ over channel c's N·S values of t: <see cref="IBackend.Reduce"/> over axes 0 and 2 of t as [N, C, S],
    /// whose bits a fused kernel's channel sums must have. Nothing where <paramref name="sums"/> is null.
    /// </summary>
    public static void ChannelSums(IBackend backend, in NormGeometry geometry, IStorage t, IStorage? sums)
    {
        if (sums is null)
        {
            return;
        }
        backend.Reduce(ReduceOp.Sum, t, new Shape(geometry.Batch, geometry.Channels, geometry.Spatial), [true, false, true], sums);
    }

    /// <summary>destination += value where value is a temporary of <see cref="Target"/>.</summary>
    private static void AddInto(IBackend backend, IStorage value, IStorage destination, long length)
    {
        if (ReferenceEquals(value, destination))
        {
            return;
        }
        var shape = new Shape(checked((int)length));
        backend.Binary(BinaryOp.Add, destination, shape, value, shape, destination, shape);
    }

    /// <summary><see cref="IBackend.AdamUpdate"/> as Affine, Binary and Unary kernels on <paramref name="backend"/>.</summary>
    public static void AdamUpdate(IBackend backend, in AdamScalars scalars, IStorage param, IStorage grad, IStorage expAvg, IStorage expAvgSq, IStorage? maxExpAvgSq,
        IStorage paramOut, IStorage expAvgOut, IStorage expAvgSqOut, IStorage? maxExpAvgSqOut)
    {
        var dtype = param.DType;
        var shape = new Shape(checked((int)param.Length));
        var temps = new List<IStorage>(12);
        IStorage Temp()
        {
            var t = backend.AllocateUninitialized(dtype, param.Length);
            temps.Add(t);
            return t;
        }
        try
        {
            var s = scalars;
            bool decay = s.WeightDecay != 0;
            var g = grad;
            if (s.Maximize)
            {
                g = Temp();
                backend.Unary(UnaryOp.Affine, grad, g, -1, 0);
            }
            var p = param;
            if (s.Decoupled && decay)
            {
                p = Temp();
                backend.Unary(UnaryOp.Affine, param, p, 1 - (s.Lr * s.WeightDecay), 0);
            }
            else if (decay)
            {
                var q = Temp();
                backend.Unary(UnaryOp.Affine, param, q, s.WeightDecay, 0);
                var gq = Temp();
                backend.Binary(BinaryOp.Add, g, shape, q, shape, gq, shape);
                g = gq;
            }
            var t1 = Temp();
            backend.Unary(UnaryOp.Affine, expAvg, t1, s.Beta1, 0);
            var t2 = Temp();
            backend.Unary(UnaryOp.Affine, g, t2, 1 - s.Beta1, 0);
            backend.Binary(BinaryOp.Add, t1, shape, t2, shape, expAvgOut, shape);
            var t3 = Temp();
            backend.Unary(UnaryOp.Affine, expAvgSq, t3, s.Beta2, 0);
            var t4 = Temp();
            backend.Unary(UnaryOp.Affine, g, t4, 1 - s.Beta2, 0);
            var t5 = Temp();
            backend.Binary(BinaryOp.Mul, t4, shape, g, shape, t5, shape);
            backend.Binary(BinaryOp.Add, t3, shape, t5, shape, expAvgSqOut, shape);
            var v = expAvgSqOut;
            if (s.Amsgrad)
            {
                backend.Binary(BinaryOp.Maximum, maxExpAvgSq ?? throw new ArgumentNullException(nameof(maxExpAvgSq)), shape, v, shape,
                    maxExpAvgSqOut ?? throw new ArgumentNullException(nameof(maxExpAvgSqOut)), shape);
                v = maxExpAvgSqOut;
            }
            double stepSize = s.Lr / (1 - Math.Pow(s.Beta1, s.Step));
            double correction = Math.Sqrt(1 - Math.Pow(s.Beta2, s.Step));
            var root = Temp();
            backend.Unary(UnaryOp.Sqrt, v, root);
            var c = dtype == DType.Float32 ? backend.Upload<float>([(float)correction], dtype) : backend.Upload<double>([correction], dtype);
            temps.Add(c);
            var scaled = Temp();
            backend.Binary(BinaryOp.Div, root, shape, c, Shape.Scalar, scaled, shape);
            var denom = Temp();
            backend.Unary(UnaryOp.Affine, scaled, denom, 1, s.Eps);
            var u = Temp();
            backend.Unary(UnaryOp.Affine, expAvgOut, u, stepSize, 0);
            var ratio = Temp();
            backend.Binary(BinaryOp.Div, u, shape, denom, shape, ratio, shape);
            backend.Binary(BinaryOp.Sub, p, shape, ratio, shape, paramOut, shape);
        }
        finally
        {
            foreach (var t in temps)
            {
                t.Dispose();
            }
        }
    }
}
