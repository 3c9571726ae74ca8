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
    /// the caller passes).
    /// </summary>
    public static void BatchNormBackward(IBackend backend, in NormGeometry geometry, IStorage gradY, IStorage x, IStorage mean, IStorage variance, IStorage weight,
        IStorage gradX, IStorage? gradWeight, IStorage? scaledNormalized)
    {
        backend.BatchNormInputGrad(geometry, gradY, x, mean, variance, weight, gradX);
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
        try
        {
            backend.BatchNorm(geometry, x, weight, zeroBias, scaledNormalized, batchMean, batchVariance);
        }
        finally
        {
            zeroBias.Dispose();
            batchMean.Dispose();
            batchVariance.Dispose();
        }
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
